//! Links the Rust tests (tests/*.rs) against libpython and libtorch, which the extension must not link.
//!
//! pyo3-tch turns on pyo3's `extension-module` feature, so nothing links libpython: Python
//! provides its symbols when it loads the extension. A test binary has no Python to load it, so
//! it links libpython itself, and finds it and libtorch at run time through rpaths.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_rust_tests)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let python = pyo3_build_config::get();
    let torch_lib = std::env::var("DEP_TCH_LIBTORCH_LIB").ok();
    let (Some(dir), Some(name), true, Some(torch_lib)) =
        (&python.lib_dir, &python.lib_name, python.shared, torch_lib)
    else {
        // A Python built without a shared libpython (manylinux's, pyenv's default) cannot be
        // linked into a test binary: the Rust tests are compiled out, and say so.
        println!(
            "cargo:warning=the Rust tests are left out: they need a shared libpython (found \
             lib_dir={:?}, lib_name={:?}, shared={}) and libtorch's directory from torch-sys",
            python.lib_dir, python.lib_name, python.shared
        );
        println!("cargo:rustc-cfg=no_rust_tests");
        return;
    };
    println!("cargo:rustc-link-arg-tests=-L{dir}");
    println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{dir}");
    println!("cargo:rustc-link-arg-tests=-l{name}");
    println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{torch_lib}");
}
