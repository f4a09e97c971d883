//! Architecture files and architecture text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(arch) = mobile_core::Arch::from_json(text, std::path::Path::new("fuzz.json")) {
        let _ = arch.cost();
        let _ = arch.text();
    }
    let space = mobile_core::Space::fbnet_small();
    if let Ok(arch) = mobile_core::Arch::parse("fuzz", &space, text) {
        let _ = arch.cost();
    }
});
