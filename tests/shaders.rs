//! Every WGSL file parses and validates with naga, with no GPU involved.
use wgsl_autoencoder::ops::Shader;

#[test]
fn every_shader_parses_and_validates() {
    for shader in Shader::ALL {
        let module = naga::front::wgsl::parse_str(shader.source()).unwrap_or_else(|e| {
            panic!(
                "{}.wgsl: {}",
                shader.name(),
                e.emit_to_string(shader.source())
            )
        });
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}.wgsl: {e:?}", shader.name()));
        assert!(
            !module.entry_points.is_empty(),
            "{}.wgsl has no entry point",
            shader.name()
        );
    }
}

#[test]
fn every_shader_file_is_embedded() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    files.sort();
    let mut embedded: Vec<String> = Shader::ALL
        .iter()
        .map(|s| format!("{}.wgsl", s.name()))
        .collect();
    embedded.sort();
    assert_eq!(files, embedded);
}
