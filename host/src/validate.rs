//! Plan validation, before anything runs: a plan ptcheck cannot judge is a `bad-plan`
//! or `over-capacity` outcome, the same on every backend, never a builder failure.
//!
//! Every number here comes from a user (a hand-written reproducer can say anything),
//! so all arithmetic on it is checked.

use ptcheck_shared::abi::layout::{in_pool_window, POOL_END, POOL_HIGH_END, POOL_HIGH_START, POOL_START};
use ptcheck_shared::abi::{MapFlags, Plan, PoolRange, MAX_OPS, MAX_POOL_RANGES, MAX_PROBES, MAX_TABLES};
use ptcheck_shared::{Level, Prot, TranslationConfig};

use crate::expect::{model, Expected, ModelError, MODEL_STEPS};
use crate::outcome::Outcome;

fn bad(why: String) -> Outcome {
    Outcome::BadPlan(why)
}

/// Check `plan` and compute its expected state.
///
/// # Errors
/// [`Outcome::BadPlan`] naming the op or pool range and what is allowed, or
/// [`Outcome::OverCapacity`] naming the limit with the numbers.
pub fn validate(plan: &Plan) -> Result<Expected, Outcome> {
    let cfg = header(plan)?;
    pools(plan, &cfg)?;
    ops(plan, &cfg)?;
    capacity(plan, &cfg)
}

fn header(plan: &Plan) -> Result<TranslationConfig, Outcome> {
    let cfg = plan.config().ok_or_else(|| bad("the plan header is not a ptcheck plan of this version".into()))?;
    let counts = [("pool ranges", plan.n_pool, MAX_POOL_RANGES), ("ops", plan.n_ops, MAX_OPS)];
    for (what, n, max) in counts {
        if n as usize > max {
            return Err(bad(format!("{n} {what}: at most {max}")));
        }
    }
    if plan.mutation != 0 || plan.builder != 0 {
        return Err(bad(
            "the plan selects its builder itself: builders come from --builder and --mutant, not from plans".into(),
        ));
    }
    if plan.n_probes as usize > MAX_PROBES {
        return Err(bad(format!("{} probes: at most {MAX_PROBES}", plan.n_probes)));
    }
    Ok(cfg)
}

fn pools(plan: &Plan, cfg: &TranslationConfig) -> Result<(), Outcome> {
    let page = cfg.page_size();
    let allowed = format!(
        "pool ranges must be {}K-page aligned, non-empty and inside a pool window, [{POOL_START:#x}, {POOL_END:#x}) \
         or [{POOL_HIGH_START:#x}, {POOL_HIGH_END:#x})",
        page >> 10
    );
    let mut seen: Vec<(u64, u64, usize)> = Vec::new();
    for (i, &PoolRange { base, size }) in plan.pool().iter().enumerate() {
        let what = format!("pool {i} [{base:#x} +{size:#x}]");
        if size == 0 {
            return Err(bad(format!("{what} is empty: {allowed}")));
        }
        if !(base | size).is_multiple_of(page) {
            return Err(bad(format!("{what} is not page aligned: {allowed}")));
        }
        let Some(end) = base.checked_add(size) else {
            return Err(bad(format!("{what} wraps around the top of the address space: {allowed}")));
        };
        if !in_pool_window(base, size) {
            return Err(bad(format!(
                "{what} leaves the pool window (guest image, mailbox and probe tags live outside it): {allowed}"
            )));
        }
        if let Some(&(_, _, j)) = seen.iter().find(|&&(b, e, _)| base < e && b < end) {
            return Err(bad(format!("{what} overlaps pool {j}: a page may be handed out only once")));
        }
        seen.push((base, end, i));
    }
    Ok(())
}

fn ops(plan: &Plan, cfg: &TranslationConfig) -> Result<(), Outcome> {
    let page = cfg.page_size();
    let pa_limit = 1u128 << cfg.pa_bits();
    for (i, op) in plan.ops().iter().enumerate() {
        let what = format!("op {i} (map {:#x} {:#x} {:#x})", op.va, op.pa, op.size);
        if op.size == 0 {
            return Err(bad(format!("{what} has size 0: map at least one {}K page", page >> 10)));
        }
        for (field, v) in [("va", op.va), ("pa", op.pa), ("size", op.size)] {
            if !v.is_multiple_of(page) {
                return Err(bad(format!("{what}: {field} {v:#x} is not {}K-page aligned", page >> 10)));
            }
        }
        if op.va < cfg.va_start() {
            return Err(bad(format!(
                "{what}: va is below the kernel (TTBR1) range of {cfg}, which starts at {:#x}",
                cfg.va_start()
            )));
        }
        if u128::from(op.va) + u128::from(op.size) > 1u128 << 64 {
            return Err(bad(format!("{what}: va + size runs past the top of the address space")));
        }
        if u128::from(op.pa) + u128::from(op.size) > pa_limit {
            return Err(bad(format!("{what}: pa + size is beyond the {}-bit PA size of {cfg}", cfg.pa_bits())));
        }
        if !Prot(op.prot).is_valid() {
            return Err(bad(format!(
                "{what}: prot {:#x} has bits that are not leaf attributes ({:#x})",
                op.prot,
                op.prot & !Prot::MASK
            )));
        }
        if op.flags & !MapFlags::ALL != 0 {
            return Err(bad(format!(
                "{what}: flags {:#x} has unknown bits {:#x} (known: 1 NO_BLOCK_MAPPINGS, 2 NO_CONT_MAPPINGS, 4 NO_EXEC_MAPPINGS)",
                op.flags,
                op.flags & !MapFlags::ALL
            )));
        }
    }
    Ok(())
}

/// Leaf tables an operation needs at the least: all of them when it cannot use a
/// block (NO_BLOCK_MAPPINGS, or VA and PA not congruent modulo the smallest block).
fn leaf_tables_at_least(cfg: &TranslationConfig, va: u64, pa: u64, size: u64, flags: u64) -> u64 {
    let span = cfg.entry_span(Level(2));
    let blocks_possible = flags & MapFlags::NO_BLOCK_MAPPINGS == 0 && (va ^ pa).is_multiple_of(span);
    if blocks_possible || cfg.root_level() == Level(3) {
        return 0;
    }
    let last = va.wrapping_add(size - 1);
    last / span - va / span + 1
}

fn capacity(plan: &Plan, cfg: &TranslationConfig) -> Result<Expected, Outcome> {
    let held_tables = MAX_TABLES as u64;
    let least = plan.ops().iter().map(|o| leaf_tables_at_least(cfg, o.va, o.pa, o.size, o.flags)).max().unwrap_or(0);
    if least > held_tables {
        return Err(Outcome::OverCapacity { limit: "tables", needed: least, held: held_tables });
    }
    let exp = match model(plan, MODEL_STEPS) {
        Ok(exp) => exp,
        Err(ModelError::BadHeader) => return Err(bad("the plan header is not a ptcheck plan of this version".into())),
        Err(ModelError::TooMuchWork { needed }) => {
            return Err(Outcome::OverCapacity { limit: "model steps", needed, held: MODEL_STEPS })
        }
    };
    if exp.tables as u64 > held_tables {
        return Err(Outcome::OverCapacity { limit: "tables", needed: exp.tables as u64, held: held_tables });
    }
    Ok(exp)
}
