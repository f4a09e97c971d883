//! `cargo run -p uniffi-bindgen -- generate --library target/debug/libmobile_core.so --language swift
//! --out-dir OUT`: uniffi's binding generator, pinned to the workspace's uniffi version so the bindings
//! always match the scaffolding compiled into mobile-core.

fn main() {
    uniffi::uniffi_bindgen_main()
}
