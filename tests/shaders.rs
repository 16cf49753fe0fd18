//! Every WGSL file parses and validates with naga, with no GPU involved.
use wgsl_autoencoder::gpu::{WORKGROUP_POISON, WRITES_BEFORE_READING};
use wgsl_autoencoder::ops::Shader;

fn parse(shader: Shader) -> naga::Module {
    naga::front::wgsl::parse_str(shader.source())
        .unwrap_or_else(|e| panic!("{}: {}", shader.path(), e.emit_to_string(shader.source())))
}

/// The value of the module-scope `const NAME: u32`, as naga folded it.
fn constant(module: &naga::Module, name: &str) -> Option<u64> {
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))?;
    match module.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => Some(v as u64),
        ref other => panic!("{name} is not a folded u32 literal: {other:?}"),
    }
}

/// Every constant Rust computes with has the shader's value: the 256 of every flat kernel, the
/// loss's chunk, the conv's tiled workgroup, the dense block size.
#[test]
fn shader_constants_match_the_rust_side() {
    for shader in Shader::ALL {
        let module = parse(shader);
        for (name, want) in shader.constants() {
            assert_eq!(
                constant(&module, name),
                Some(want),
                "{}: {name}",
                shader.path()
            );
        }
    }
}

/// A literal workgroup size would escape that check: every entry point takes its size from a
/// named constant.
#[test]
fn workgroup_sizes_are_named_constants() {
    for shader in Shader::ALL {
        for line in shader.source().lines() {
            if let Some(rest) = line.trim().strip_prefix("@compute @workgroup_size(") {
                assert!(
                    rest.starts_with(|c: char| c.is_ascii_uppercase()),
                    "{}: {line}",
                    shader.path()
                );
            }
        }
    }
}

/// The entry points that need subgroups (wgpu's `SUBGROUP`: the CPU set's `lanes`, whose
/// launchers choose them only where `Gpu::subgroup_lanes` says the device has them). Every
/// other entry point needs no optional capability.
const SUBGROUP_ENTRIES: [(&str, &str); 4] = [
    ("cpu/conv2d", "forward_lanes"),
    ("cpu/conv2d", "backward_input_lanes"),
    ("cpu/conv2d", "forward_up_lanes"),
    ("cpu/conv2d", "backward_input_up_lanes"),
];

/// `module` validated with `capabilities`; the error as naga prints it.
fn validate(
    module: &naga::Module,
    capabilities: naga::valid::Capabilities,
) -> Result<naga::valid::ModuleInfo, String> {
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .validate(module)
        .map_err(|e| format!("{e:?}"))
}

/// Each file validates with subgroups; each entry point alone (what it reaches, as a
/// pipeline's module holds it) with no optional capability, but for [`SUBGROUP_ENTRIES`],
/// which need them.
#[test]
fn every_shader_parses_and_validates() {
    for shader in Shader::ALL {
        let module = parse(shader);
        let info = validate(&module, naga::valid::Capabilities::SUBGROUP)
            .unwrap_or_else(|e| panic!("{}: {e:?}", shader.path()));
        for entry in &module.entry_points {
            let (alone, _) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((naga::ShaderStage::Compute, &entry.name)),
                &Default::default(),
            )
            .unwrap_or_else(|e| panic!("{} {}: {e}", shader.path(), entry.name));
            let needs = SUBGROUP_ENTRIES.contains(&(shader.name(), entry.name.as_str()));
            let plain = validate(&alone, naga::valid::Capabilities::empty());
            assert_eq!(
                plain.is_ok(),
                !needs,
                "{} {} with no optional capability: {plain:?}",
                shader.path(),
                entry.name
            );
        }
        assert!(
            !module.entry_points.is_empty(),
            "{} has no entry point",
            shader.path()
        );
    }
}

/// The tests' workgroup poison check (not an op, so not in `Shader::ALL`) validates too.
#[test]
fn the_workgroup_poison_check_parses_and_validates() {
    let module = naga::front::wgsl::parse_str(WORKGROUP_POISON.source)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string(WORKGROUP_POISON.source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{}.wgsl: {e:?}", WORKGROUP_POISON.name));
}

/// The functions `block` calls, nested blocks included.
fn calls(block: &naga::Block, out: &mut Vec<naga::Handle<naga::Function>>) {
    for statement in block.iter() {
        match statement {
            naga::Statement::Call { function, .. } => out.push(*function),
            naga::Statement::Block(b) => calls(b, out),
            naga::Statement::If { accept, reject, .. } => {
                calls(accept, out);
                calls(reject, out);
            }
            naga::Statement::Loop {
                body, continuing, ..
            } => {
                calls(body, out);
                calls(continuing, out);
            }
            naga::Statement::Switch { cases, .. } => {
                for c in cases {
                    calls(&c.body, out);
                }
            }
            _ => {}
        }
    }
}

fn is_poison(module: &naga::Module, f: naga::Handle<naga::Function>) -> bool {
    let name = module.functions[f].name.as_deref().unwrap_or("");
    name.starts_with("poison_")
}

/// The workgroup arrays entry point `index` uses apart from its `poison_*` calls, by name
/// (naga's usage of a function counts its callees', so each callee's is taken whole but the
/// poison's), and the arrays its body fills with NaN before any other statement (its leading
/// calls of `poison_<array>`).
fn used_and_poisoned(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    index: usize,
) -> (Vec<String>, Vec<String>) {
    let entry = &module.entry_points[index].function;
    let mut callees = Vec::new();
    calls(&entry.body, &mut callees);
    callees.retain(|f| !is_poison(module, *f));
    let direct: Vec<naga::Handle<naga::GlobalVariable>> = entry
        .expressions
        .iter()
        .filter_map(|(_, e)| match e {
            naga::Expression::GlobalVariable(g) => Some(*g),
            _ => None,
        })
        .collect();
    let mut used: Vec<String> = module
        .global_variables
        .iter()
        .filter(|(h, v)| {
            v.space == naga::AddressSpace::WorkGroup
                && (direct.contains(h) || callees.iter().any(|f| !info[*f][*h].is_empty()))
        })
        .filter_map(|(_, v)| v.name.clone())
        .collect();
    let mut poisoned = Vec::new();
    for statement in entry.body.iter() {
        match statement {
            naga::Statement::Emit(_) => {}
            naga::Statement::Call { function, .. } if is_poison(module, *function) => {
                let name = module.functions[*function].name.as_deref().unwrap_or("");
                poisoned.push(name["poison_".len()..].to_string());
            }
            _ => break,
        }
    }
    used.sort();
    poisoned.sort();
    (used, poisoned)
}

/// Every entry point whose pipeline skips zeroing its workgroup memory (the list in
/// src/gpu/pipeline.rs) fills every workgroup array it uses with NaN first when the tests ask
/// (`poison_<array>`), and only those arrays: a missing call would leave a read before a
/// write unseen on lavapipe, an extra one would make a kernel hold an array it does not use.
#[test]
fn kernels_that_skip_zeroing_take_the_tests_poison_first() {
    let mut checked = 0;
    for shader in Shader::ALL {
        let module = parse(shader);
        let info = validate(&module, naga::valid::Capabilities::SUBGROUP).unwrap();
        for (index, entry) in module.entry_points.iter().enumerate() {
            if !WRITES_BEFORE_READING.contains(&(shader.name(), entry.name.as_str())) {
                continue;
            }
            let (used, poisoned) = used_and_poisoned(&module, &info, index);
            assert!(
                !used.is_empty(),
                "{}.{}: no workgroup memory",
                shader.name(),
                entry.name
            );
            assert_eq!(
                poisoned,
                used,
                "{}.{}: arrays poisoned first",
                shader.name(),
                entry.name
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        WRITES_BEFORE_READING.len(),
        "entry points found of the list"
    );
}

/// Every `.wgsl` under `dir`, as paths relative to `shaders/` (`prefix` is `dir`'s).
fn wgsl_files(dir: &std::path::Path, prefix: &str, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if entry.file_type().unwrap().is_dir() {
            wgsl_files(&entry.path(), &format!("{prefix}{name}/"), found);
        } else if name.ends_with(".wgsl") {
            found.push(format!("{prefix}{name}"));
        }
    }
}

#[test]
fn every_shader_file_is_embedded() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut files = Vec::new();
    wgsl_files(std::path::Path::new(dir), "", &mut files);
    files.sort();
    let mut embedded: Vec<String> = Shader::ALL
        .iter()
        .flat_map(|s| s.files())
        .chain(["common.wgsl".to_string(), "cpu/blocks.wgsl".to_string()])
        .chain([format!("{}.wgsl", WORKGROUP_POISON.name)])
        .collect();
    embedded.sort();
    assert_eq!(files, embedded);
}

/// WebGPU's default `max_compute_workgroup_storage_size`: what every adapter offers.
const WEBGPU_WORKGROUP_STORAGE: u32 = 16384;

/// Every entry point's workgroup memory (the module-scope arrays it uses, which is what a
/// pipeline allocates) fits WebGPU's default limit: lavapipe allows more, so a kernel tested
/// only there could exceed it unseen.
#[test]
fn workgroup_memory_fits_webgpu_defaults() {
    for shader in Shader::ALL {
        let module = parse(shader);
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {e:?}", shader.path()));
        for (i, entry) in module.entry_points.iter().enumerate() {
            let uses = info.get_entry_point(i);
            let bytes: u32 = module
                .global_variables
                .iter()
                .filter(|(h, v)| v.space == naga::AddressSpace::WorkGroup && !uses[*h].is_empty())
                .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
                .sum();
            assert!(
                bytes <= WEBGPU_WORKGROUP_STORAGE,
                "{}, {}: {bytes} bytes of workgroup memory",
                shader.path(),
                entry.name
            );
        }
    }
}
