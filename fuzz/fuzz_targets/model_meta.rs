//! An exported model's bytes as an app receives them: the ONNX protobuf and the fbnet metadata in it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let origin = std::path::Path::new("fuzz.onnx");
    if let Ok(model) = mobile_core::model_meta::decode_model(data, origin) {
        let _ = mobile_core::model_meta::ModelMeta::from_model(&model, origin);
    }
});
