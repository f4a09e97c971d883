//! Search spaces as JSON (what an app's profile request carries): parsed, validated, and when valid,
//! their layers, ops and costs computed, none of which may panic or allocate without bound.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(space) = serde_json::from_slice::<mobile_core::Space>(data)
        && space.validate().is_ok()
    {
        let _ = space.hash();
        for op in space.unique_ops() {
            let _ = op.cost();
            let _ = op.key();
        }
    }
});
