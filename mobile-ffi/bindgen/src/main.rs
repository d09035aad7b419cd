//! `uniffi-bindgen`: generates foreign-language bindings for `cascade-ffi`,
//! e.g. `uniffi-bindgen generate --library libcascade_ffi.so --language kotlin --out-dir out`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
