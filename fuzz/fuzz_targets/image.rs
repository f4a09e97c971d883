//! Images to classify (PNG, JPEG, anything else): decoded within the limits or refused.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for channels in [1, 3] {
        let _ = mobile_core::preprocess::decode(data, channels, std::path::Path::new("fuzz.png"));
    }
});
