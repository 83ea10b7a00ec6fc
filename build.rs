//! Links the Rust tests (tests/*.rs) against libpython and libtorch, which the extension must not link.
//!
//! pyo3-tch turns on pyo3's `extension-module` feature, so nothing links libpython: Python
//! provides its symbols when it loads the extension. A test binary has no Python to load it, so
//! it links libpython itself, and finds it and libtorch at run time through rpaths.

fn main() {
    let python = pyo3_build_config::get();
    if let Some(dir) = &python.lib_dir {
        println!("cargo:rustc-link-arg-tests=-L{dir}");
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{dir}");
    }
    if let Some(name) = &python.lib_name {
        println!("cargo:rustc-link-arg-tests=-l{name}");
    }
    // torch-sys's build script reports the directory of the libtorch it linked (`links = "tch"`).
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{dir}");
    }
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-changed=build.rs");
}
