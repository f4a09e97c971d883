//! CIFAR-10 binary batch files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data_batch_1.bin");
    std::fs::write(&file, data).unwrap();
    let _ = fbnet::data::load_cifar_batches(&[file.as_path()]);
});
