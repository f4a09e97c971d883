//! IDX image and label files (plain or gzip), as a dataset folder holds them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // the first half is the images file, the rest the labels file
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = data.split_at(data.len() / 2);
    let (images, labels) = (dir.path().join("i"), dir.path().join("l"));
    std::fs::write(&images, a).unwrap();
    std::fs::write(&labels, b).unwrap();
    let _ = fbnet::data::load_idx(&images, &labels, None);
});
