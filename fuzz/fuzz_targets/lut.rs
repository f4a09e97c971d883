//! Latency tables: any text loads or is refused with an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(lut) = mobile_core::lut::Lut::from_json(text, std::path::Path::new("fuzz.json"))
    {
        // a table that loads can be asked what it lacks and predict the space's built-in networks
        for dtype in lut.dtypes.clone() {
            let _ = lut.missing(dtype);
        }
        let _ = lut.to_json();
    }
});
