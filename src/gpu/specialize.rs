//! One entry point of a WGSL module with its override constants applied and the branches they
//! decide cut away, as the naga module a pipeline is built from.
//!
//! The kernels are written for their override constants: one entry point serves every variant
//! (`if (UP == 2u) { … } else { … }`, `if (GCO > 4u) { … }`), and the driver is left to drop
//! the branches a pipeline's constants rule out. lavapipe does, but only after inlining and
//! lowering all of them: its front end then spends most of a CPU-set convolution's build on
//! code that never runs (0.4-0.9 s a pipeline). naga applies the constants as wgpu would
//! (`process_overrides`, which also keeps only what the entry point reaches); the branches
//! whose condition that leaves a constant are then replaced by the block they take, and
//! whatever only those reached is compacted away.
use naga::back::pipeline_constants::process_overrides;
use naga::{Block, Expression, Function, Literal, Module, Statement};
use wgpu::naga;

/// A WGSL module parsed and validated once, specialised per pipeline.
pub(crate) struct Parsed {
    module: Module,
    info: naga::valid::ModuleInfo,
}

impl Parsed {
    /// `source` parsed and validated; the error is naga's message.
    pub(crate) fn new(source: &str) -> Result<Self, String> {
        let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| e.emit_to_string(source))?;
        Ok(Self { module, info })
    }

    /// Compute entry point `entry` alone, with `constants` applied and the branches they
    /// decide replaced by the block taken.
    pub(crate) fn specialize(
        &self,
        entry: &str,
        constants: &[(&'static str, f64)],
    ) -> Result<Module, String> {
        let mut values = naga::back::PipelineConstants::default();
        for (name, value) in constants {
            values.insert((*name).to_string(), *value);
        }
        let (module, _) = process_overrides(
            &self.module,
            &self.info,
            Some((naga::ShaderStage::Compute, entry)),
            &values,
        )
        .map_err(|e| e.to_string())?;
        let mut module = module.into_owned();
        let constant_bools = ConstantBools::of(&module);
        for (_, f) in module.functions.iter_mut() {
            cut_decided_branches(f, &constant_bools);
        }
        for ep in module.entry_points.iter_mut() {
            cut_decided_branches(&mut ep.function, &constant_bools);
        }
        naga::compact::compact(&mut module, naga::compact::KeepUnused::No);
        Ok(module)
    }
}

/// The module's boolean constants by handle: what a condition that names one decides.
struct ConstantBools(Vec<Option<bool>>);

impl ConstantBools {
    fn of(module: &Module) -> Self {
        let value = |(_, c): (_, &naga::Constant)| match module.global_expressions[c.init] {
            Expression::Literal(Literal::Bool(b)) => Some(b),
            _ => None,
        };
        Self(module.constants.iter().map(value).collect())
    }

    /// Whether `condition` (an expression of `f`) is a constant, and which.
    fn decide(&self, f: &Function, condition: naga::Handle<Expression>) -> Option<bool> {
        match f.expressions[condition] {
            Expression::Literal(Literal::Bool(b)) => Some(b),
            Expression::Constant(c) => self.0.get(c.index()).copied().flatten(),
            _ => None,
        }
    }
}

fn cut_decided_branches(f: &mut Function, bools: &ConstantBools) {
    let mut body = std::mem::take(&mut f.body);
    cut_in_block(&mut body, f, bools);
    f.body = body;
    // A `let` of a cut block names an expression that nothing emits any more; compaction
    // keeps named expressions, so the name must go with its block (a call's result named
    // there would keep an expression whose function is gone).
    let mut emitted = vec![false; f.expressions.len()];
    mark_emitted(&f.body, &mut emitted);
    f.named_expressions
        .retain(|h, _| emitted.get(h.index()).copied().unwrap_or(false));
}

/// Marks every expression that a statement of `block` (nested ones too) emits, and the
/// results of its calls.
fn mark_emitted(block: &Block, emitted: &mut [bool]) {
    for statement in block.iter() {
        match statement {
            Statement::Emit(range) => {
                for h in range.clone() {
                    emitted[h.index()] = true;
                }
            }
            Statement::Call {
                result: Some(h), ..
            } => emitted[h.index()] = true,
            Statement::If { accept, reject, .. } => {
                mark_emitted(accept, emitted);
                mark_emitted(reject, emitted);
            }
            Statement::Block(inner) => mark_emitted(inner, emitted),
            Statement::Loop {
                body, continuing, ..
            } => {
                mark_emitted(body, emitted);
                mark_emitted(continuing, emitted);
            }
            Statement::Switch { cases, .. } => {
                for case in cases {
                    mark_emitted(&case.body, emitted);
                }
            }
            _ => {}
        }
    }
}

/// Every `if` in `block` (nested ones too) whose condition is a constant becomes the block it
/// takes.
fn cut_in_block(block: &mut Block, f: &Function, bools: &ConstantBools) {
    for statement in block.iter_mut() {
        match statement {
            Statement::If {
                condition,
                accept,
                reject,
            } => {
                cut_in_block(accept, f, bools);
                cut_in_block(reject, f, bools);
                if let Some(taken) = bools.decide(f, *condition) {
                    let kept = std::mem::take(if taken { accept } else { reject });
                    *statement = Statement::Block(kept);
                }
            }
            Statement::Block(inner) => cut_in_block(inner, f, bools),
            Statement::Loop {
                body, continuing, ..
            } => {
                cut_in_block(body, f, bools);
                cut_in_block(continuing, f, bools);
            }
            Statement::Switch { cases, .. } => {
                for case in cases.iter_mut() {
                    cut_in_block(&mut case.body, f, bools);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel with one branch its constant decides, one the data decides, and a function
    /// and a binding that only the first branch's accept block reaches (through a `let` of a
    /// call's result, which compaction would otherwise keep by its name).
    const SOURCE: &str = "
        override WIDE: bool = false;
        override N: u32 = 1u;
        @group(0) @binding(0) var<uniform> p: vec4<f32>;
        @group(0) @binding(1) var<storage, read_write> out: array<f32>;
        @group(0) @binding(2) var<storage, read> only_wide: array<f32>;
        fn wide_sum() -> f32 { return only_wide[0] + only_wide[1]; }
        @compute @workgroup_size(1)
        fn main() {
            if (WIDE) {
                let s = wide_sum();
                out[0] = s;
            } else {
                out[0] = 1.0;
            }
            if (N > 2u) { out[1] = p.x; }
            if (out[2] > 0.0) { out[3] = 4.0; }
        }
        @compute @workgroup_size(1)
        fn other() { out[5] = only_wide[5]; }
    ";

    fn specialized(constants: &[(&'static str, f64)]) -> Module {
        let module = Parsed::new(SOURCE)
            .unwrap()
            .specialize("main", constants)
            .unwrap();
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{constants:?}: the specialised module is invalid: {e:?}"));
        module
    }

    fn bindings(m: &Module) -> Vec<u32> {
        let mut b: Vec<u32> = m
            .global_variables
            .iter()
            .filter_map(|(_, g)| g.binding.as_ref().map(|b| b.binding))
            .collect();
        b.sort();
        b
    }

    fn ifs(block: &Block) -> usize {
        block
            .iter()
            .map(|s| match s {
                Statement::If { accept, reject, .. } => 1 + ifs(accept) + ifs(reject),
                Statement::Block(b) => ifs(b),
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn decided_branches_go_with_what_only_they_reach() {
        let narrow = specialized(&[("WIDE", 0.0), ("N", 1.0)]);
        assert_eq!(
            narrow.entry_points.len(),
            1,
            "only the entry point asked for"
        );
        assert!(narrow
            .functions
            .iter()
            .all(|(_, f)| f.name.as_deref() != Some("wide_sum")));
        assert_eq!(bindings(&narrow), [1], "neither p nor only_wide is used");
        assert_eq!(
            ifs(&narrow.entry_points[0].function.body),
            1,
            "the data's branch stays"
        );

        let wide = specialized(&[("WIDE", 1.0), ("N", 3.0)]);
        assert!(wide
            .functions
            .iter()
            .any(|(_, f)| f.name.as_deref() == Some("wide_sum")));
        assert_eq!(bindings(&wide), [0, 1, 2]);
        assert_eq!(ifs(&wide.entry_points[0].function.body), 1);
    }

    #[test]
    fn an_unknown_constant_is_an_error_naming_it() {
        let e = Parsed::new(SOURCE)
            .unwrap()
            .specialize("main", &[("NOT_THERE", 1.0)])
            .unwrap_err();
        assert!(e.contains("NOT_THERE"), "{e}");
        let e = Parsed::new("fn f() { let x: u32 = 1.5; }").err().unwrap();
        assert!(e.contains("1.5") || e.contains("u32"), "{e}");
    }
}
