//! Compiles the C++ shim (csrc/engine.cpp) against torch's headers, and links the Rust tests.
//!
//! The shim is compiled from the headers of the torch that torch-sys builds against: the same
//! Python (`python` on PATH in a venv, else `python3`), the same include directories and C++ ABI
//! flag. pyo3-tch turns on pyo3's `extension-module` feature, so nothing links libpython: Python
//! provides its symbols when it loads the extension. A test binary has no Python to load it, so
//! it links libpython itself, and finds it and libtorch at run time through rpaths.

use std::process::Command;

/// What the torch in the build's Python says about itself: version, C++ ABI, include dirs.
struct Torch {
    release: String,
    cxx11_abi: String,
    includes: Vec<String>,
}

// The include directories torch-sys compiles against (torch.utils.cpp_extension's, without
// importing it: it needs setuptools).
const QUERY: &str = "
import os, torch
print('VERSION', torch.__version__)
print('ABI', int(torch._C._GLIBCXX_USE_CXX11_ABI))
include = os.path.join(os.path.dirname(torch.__file__), 'include')
print('INCLUDE', include)
print('INCLUDE', os.path.join(include, 'torch', 'csrc', 'api', 'include'))
";

fn query_torch() -> Torch {
    // torch-sys's choice of interpreter, so that both compile against the same headers (the
    // build backend puts the build's own first on PATH under both names).
    let python = if std::env::var_os("VIRTUAL_ENV").is_some() {
        "python"
    } else {
        "python3"
    };
    let output = Command::new(python)
        .args(["-c", QUERY])
        .output()
        .unwrap_or_else(|err| panic!("cannot run {python} to find torch's headers: {err}"));
    assert!(
        output.status.success(),
        "{python} could not import torch to find its headers (build with pip or make, whose \
         build backend points it at the torch being built for):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut torch = Torch {
        release: String::new(),
        cxx11_abi: "1".to_owned(),
        includes: vec![],
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        match line.split_once(' ') {
            Some(("VERSION", version)) => {
                torch.release = version.split('+').next().unwrap_or(version).to_owned();
            }
            Some(("ABI", abi)) => torch.cxx11_abi = abi.to_owned(),
            Some(("INCLUDE", path)) => torch.includes.push(path.to_owned()),
            _ => {}
        }
    }
    torch
}

fn compile_shim() {
    println!("cargo:rerun-if-changed=csrc/engine.cpp");
    let torch = query_torch();
    // The torch release whose headers we compile against: jacobian._native.TORCH_VERSION.
    println!("cargo:rustc-env=JACOBIAN_TORCH_VERSION={}", torch.release);
    let mut build = cc::Build::new();
    build.cpp(true).pic(true).file("csrc/engine.cpp");
    // -isystem: warnings in torch's own headers are not ours to fix.
    for include in &torch.includes {
        build.flag("-isystem").flag(include);
    }
    // The standard torch's headers need (releases.toml's `cxx`), which the build backend writes
    // into the pinned sources' .cargo/config.toml.
    println!("cargo:rerun-if-env-changed=JACOBIAN_CXX_STANDARD");
    let standard = std::env::var("JACOBIAN_CXX_STANDARD").unwrap_or_else(|_| {
        panic!(
            "JACOBIAN_CXX_STANDARD is not set: build with pip or make, whose build backend \
             pins the sources to a torch release (see CONTRIBUTING.md), not with cargo in the \
             checkout (torch {})",
            torch.release
        )
    });
    build
        .flag(format!("-std={standard}"))
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", torch.cxx11_abi))
        .compile("jacobian_engine");
}

fn link_rust_tests() {
    println!("cargo::rustc-check-cfg=cfg(no_rust_tests)");
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

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    compile_shim();
    link_rust_tests();
}
