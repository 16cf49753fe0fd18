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
        let mut functions = std::mem::take(&mut module.functions);
        for (_, f) in functions.iter_mut() {
            cut_decided_branches(&module, f, &constant_bools);
        }
        module.functions = functions;
        let mut entry_points = std::mem::take(&mut module.entry_points);
        for ep in entry_points.iter_mut() {
            cut_decided_branches(&module, &mut ep.function, &constant_bools);
        }
        module.entry_points = entry_points;
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
}

/// What is known of a function's boolean values while its statements are walked in order.
///
/// naga lowers `a && b` (and `||`) in a function to a local variable that an `if` on `a`
/// stores `b` or `false` into, and the outer `if` loads it: so `if (W4 && CO % 4u == 0u)` is
/// decided only once the stores of that local variable are followed.
struct Known<'f> {
    f: &'f Function,
    constants: &'f ConstantBools,
    /// The local variables followed: bool-typed and never passed to a call (so only the
    /// function's own stores write them).
    followed: Vec<bool>,
    /// Each load of a followed variable by handle: the value it read, where the walk knew it
    /// at the load's emission.
    loads: Vec<Option<bool>>,
}

/// The followed variables' values at a point of the walk (None: not known there).
type Vars = Vec<Option<bool>>;

impl<'f> Known<'f> {
    /// `body` is `f`'s, taken out of it for the walk.
    fn new(module: &Module, f: &'f Function, body: &Block, constants: &'f ConstantBools) -> Self {
        let is_bool = |v: &naga::LocalVariable| {
            matches!(
                module.types[v.ty].inner,
                naga::TypeInner::Scalar(naga::Scalar::BOOL)
            )
        };
        let mut followed: Vec<bool> = f.local_variables.iter().map(|(_, v)| is_bool(v)).collect();
        escape_through_calls(body, f, &mut followed);
        Self {
            f,
            constants,
            followed,
            loads: vec![None; f.expressions.len()],
        }
    }

    /// The followed variable that `pointer` (an expression) names, if any.
    fn variable(&self, pointer: naga::Handle<Expression>) -> Option<usize> {
        match self.f.expressions[pointer] {
            Expression::LocalVariable(v) if self.followed[v.index()] => Some(v.index()),
            _ => None,
        }
    }

    /// Whether `e` is a constant, or a load whose value the walk knew, and which.
    fn decide(&self, e: naga::Handle<Expression>) -> Option<bool> {
        match self.f.expressions[e] {
            Expression::Literal(Literal::Bool(b)) => Some(b),
            Expression::Constant(c) => self.constants.0.get(c.index()).copied().flatten(),
            Expression::Load { .. } => self.loads[e.index()],
            _ => None,
        }
    }

    fn vars(&self) -> Vars {
        vec![None; self.followed.len()]
    }
}

/// Marks the variables passed to a call (a pointer argument) as not followed.
fn escape_through_calls(block: &Block, f: &Function, followed: &mut [bool]) {
    for_each_statement(block, &mut |statement| {
        if let Statement::Call { arguments, .. } = statement {
            for &a in arguments {
                if let Expression::LocalVariable(v) = f.expressions[a] {
                    followed[v.index()] = false;
                }
            }
        }
    });
}

/// Calls `visit` on every statement of `block`, nested ones too.
fn for_each_statement(block: &Block, visit: &mut impl FnMut(&Statement)) {
    for statement in block.iter() {
        visit(statement);
        match statement {
            Statement::If { accept, reject, .. } => {
                for_each_statement(accept, visit);
                for_each_statement(reject, visit);
            }
            Statement::Block(inner) => for_each_statement(inner, visit),
            Statement::Loop {
                body, continuing, ..
            } => {
                for_each_statement(body, visit);
                for_each_statement(continuing, visit);
            }
            Statement::Switch { cases, .. } => {
                for case in cases {
                    for_each_statement(&case.body, visit);
                }
            }
            _ => {}
        }
    }
}

/// The followed variables that some statement of `block` stores into.
fn stored_in(block: &Block, known: &Known<'_>) -> Vec<usize> {
    let mut stored = Vec::new();
    for_each_statement(block, &mut |statement| {
        if let Statement::Store { pointer, .. } = statement {
            stored.extend(known.variable(*pointer));
        }
    });
    stored
}

fn forget(vars: &mut Vars, stored: &[usize]) {
    for &v in stored {
        vars[v] = None;
    }
}

fn cut_decided_branches(module: &Module, f: &mut Function, constants: &ConstantBools) {
    let mut body = std::mem::take(&mut f.body);
    let mut known = Known::new(module, f, &body, constants);
    let mut vars = known.vars();
    cut_in_block(&mut body, &mut known, &mut vars);
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
    for_each_statement(block, &mut |statement| match statement {
        Statement::Emit(range) => {
            for h in range.clone() {
                emitted[h.index()] = true;
            }
        }
        Statement::Call {
            result: Some(h), ..
        } => emitted[h.index()] = true,
        _ => {}
    });
}

/// Whether `statement` always leaves its block: a `return`, `break`, `continue` or `discard`,
/// or a block (a cut `if`'s) that ends in one.
fn always_leaves(statement: &Statement) -> bool {
    match statement {
        Statement::Return { .. } | Statement::Kill | Statement::Break | Statement::Continue => true,
        Statement::Block(inner) => inner.last().is_some_and(always_leaves),
        _ => false,
    }
}

/// Walks `block` in order, `vars` holding what is known on entry (and, on return, on exit):
/// every `if` whose condition is then a constant becomes the block it takes, and what follows
/// a statement that always leaves the block is dropped (`if (CI % 4u == 0u) { …; return; }`
/// leaves the scalar path after it unreachable, and with it the bindings only it uses).
fn cut_in_block(block: &mut Block, known: &mut Known<'_>, vars: &mut Vars) {
    let mut end = None;
    for (k, statement) in block.iter_mut().enumerate() {
        cut_statement(statement, known, vars);
        if always_leaves(statement) {
            end = Some(k + 1);
            break;
        }
    }
    if let Some(end) = end {
        block.cull(end..);
    }
}

fn cut_statement(statement: &mut Statement, known: &mut Known<'_>, vars: &mut Vars) {
    // A condition the constants (or the followed variables) decide: the block it takes.
    if let Statement::If {
        condition,
        accept,
        reject,
    } = statement
    {
        if let Some(taken) = known.decide(*condition) {
            let kept = std::mem::take(if taken { accept } else { reject });
            *statement = Statement::Block(kept);
        }
    }
    match statement {
        Statement::Emit(range) => {
            for h in range.clone() {
                if let Expression::Load { pointer } = known.f.expressions[h] {
                    if let Some(v) = known.variable(pointer) {
                        known.loads[h.index()] = vars[v];
                    }
                }
            }
        }
        Statement::Store { pointer, value } => {
            if let Some(v) = known.variable(*pointer) {
                vars[v] = known.decide(*value);
            }
        }
        Statement::Block(inner) => cut_in_block(inner, known, vars),
        Statement::If { accept, reject, .. } => {
            let mut other = vars.clone();
            cut_in_block(accept, known, vars);
            cut_in_block(reject, known, &mut other);
            // Known after the `if` where both ways agree.
            for (v, o) in vars.iter_mut().zip(other) {
                if *v != o {
                    *v = None;
                }
            }
        }
        Statement::Loop {
            body, continuing, ..
        } => {
            // Each iteration starts with whatever an earlier one stored; `continuing` is
            // reached from the body's end and from each `continue`, so it starts knowing
            // what the top does.
            let mut stored = stored_in(body, known);
            stored.extend(stored_in(continuing, known));
            forget(vars, &stored);
            cut_in_block(body, known, &mut vars.clone());
            cut_in_block(continuing, known, &mut vars.clone());
        }
        Statement::Switch { cases, .. } => {
            // A case may fall through into the next: each starts knowing only what no
            // case stores.
            let stored: Vec<usize> = cases
                .iter()
                .flat_map(|c| stored_in(&c.body, known))
                .collect();
            forget(vars, &stored);
            for case in cases.iter_mut() {
                cut_in_block(&mut case.body, known, &mut vars.clone());
            }
        }
        _ => {}
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

    /// `source`'s `main` specialised with `constants`, checked to validate.
    fn specialized_from(source: &str, constants: &[(&'static str, f64)]) -> Module {
        let module = Parsed::new(source)
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

    fn specialized(constants: &[(&'static str, f64)]) -> Module {
        specialized_from(SOURCE, constants)
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
    /// Conditions joined by `&&` and `||`, which naga lowers to a local variable that an `if`
    /// stores into; two joined with the data (the data's `if` then stores a different value
    /// each way); one whose variable a loop stores into; one in a loop's `continuing`, which a
    /// `continue` reaches with another value than the body's end; and a function whose
    /// decided branch returns, leaving the code after it unreachable.
    const JOINED: &str = "
        override W4: bool = false;
        override CO: u32 = 1u;
        @group(0) @binding(1) var<storage, read_write> out: array<f32>;
        @group(0) @binding(2) var<storage, read> and_only: array<f32>;
        @group(0) @binding(3) var<storage, read> or_only: array<f32>;
        @group(0) @binding(4) var<storage, read> chain_only: array<f32>;
        @group(0) @binding(5) var<storage, read> data_only: array<f32>;
        @group(0) @binding(6) var<storage, read> loop_only: array<f32>;
        @group(0) @binding(7) var<storage, read> either_way: array<f32>;
        @group(0) @binding(8) var<storage, read> via_continue: array<f32>;
        @group(0) @binding(9) var<storage, read_write> narrow_out: array<f32>;
        @group(0) @binding(10) var<storage, read_write> wide_out: array<f32>;
        fn store_either(i: u32, v: f32) {
            if (W4) { wide_out[i] = v; return; }
            narrow_out[i] = v;
        }
        @compute @workgroup_size(1)
        fn main() {
            if (W4 && CO % 4u == 0u) { out[0] = and_only[0]; }
            if (!W4 || CO == 3u) { out[1] = or_only[0]; }
            if (W4 && CO > 1u && CO % 4u == 0u) { out[2] = chain_only[0]; }
            if (W4 && out[3] > 0.0) { out[3] = data_only[0]; }
            if (out[5] > 0.0 || W4) { out[5] = either_way[0]; }
            var once: bool;
            once = false;
            for (var i = 0u; i < 2u; i++) {
                if (once) { out[4] = loop_only[0]; }
                once = true;
            }
            var i = 0u;
            var flag: bool;
            loop {
                if (i >= 4u) { break; }
                flag = false;
                if (out[i] > 0.0) { flag = true; continue; }
                flag = false;
                continuing {
                    if (flag) { out[9] = via_continue[0]; }
                    i++;
                }
            }
            store_either(10u, 1.0);
        }
    ";

    fn joined(w4: bool, co: u32) -> Vec<u32> {
        bindings(&specialized_from(
            JOINED,
            &[("W4", w4 as u32 as f64), ("CO", co as f64)],
        ))
    }

    #[test]
    fn conditions_joined_by_and_or_are_decided_too_and_what_a_return_leaves_goes() {
        // The loop's second iteration reads loop_only: a variable a loop stores is not known
        // at the loop's top.
        assert_eq!(joined(false, 8), [1, 3, 6, 7, 8, 9], "only `!W4 ||` holds");
        assert_eq!(joined(true, 8), [1, 2, 4, 5, 6, 7, 8, 10]);
        assert_eq!(joined(true, 3), [1, 3, 5, 6, 7, 8, 10]);
        assert_eq!(joined(true, 1), [1, 5, 6, 7, 8, 10]);
    }
}
