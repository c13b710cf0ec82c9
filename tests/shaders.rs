//! Every shader parses and validates with naga, with no GPU involved.

use cnn_lstm::shaders::{Shader, COMMON};

fn validate(name: &str, source: &str) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: parse error:\n{}", e.emit_to_string(source)));
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    );
    if let Err(e) = validator.validate(&module) {
        panic!("{name}: validation error:\n{}", e.emit_to_string(source));
    }
}

#[test]
fn common_prelude_is_valid_wgsl_on_its_own() {
    validate("common", COMMON);
}

#[test]
fn every_kernel_module_validates() {
    for shader in Shader::ALL {
        validate(shader.name(), &shader.source());
    }
}

#[test]
fn every_shader_file_is_listed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().trim_end_matches(".wgsl").to_string())
        .filter(|n| n != "common")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = Shader::ALL.iter().map(|s| s.name().to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}
