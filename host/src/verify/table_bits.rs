//! `table_bits`: UXNTable on every table descriptor, PXNTable exactly where
//! NO_EXEC_MAPPINGS asked for it.

use ptcheck_shared::{Descriptor, Level};

use super::check::{op_name, Check, Ctx};
use crate::expect::{Policy, TableEntry};

/// The `table_bits` check.
pub(super) fn check(cx: &Ctx<'_>, c: &mut Check) {
    let Ctx { exp, walk: w, .. } = *cx;
    if exp.policy == Policy::Own {
        // aarch64-paging documents no hierarchical attributes on table descriptors.
        for t in w.tables.iter().skip(1) {
            let got = t.parent_desc.table_attrs();
            if got != 0 {
                c.fail(format!(
                    "table descriptor for {} table at VA {:#x}: table bits {got:#x}, expected none",
                    t.level, t.va
                ));
            }
        }
        return;
    }
    for t in w.tables.iter().skip(1) {
        if let Some(TableEntry { attrs, op }) = exp.table_entries.get(&(Level(t.level.0 - 1), t.va)) {
            let got = t.parent_desc.table_attrs();
            if got != *attrs {
                c.fail(format!(
                    "table descriptor for {} table at VA {:#x} (made by {}): table bits {got:#x}, expected {attrs:#x} (UXNTable{})",
                    t.level,
                    t.va,
                    op_name(*op),
                    if attrs & Descriptor::PXN_TABLE != 0 { " + PXNTable" } else { "" }
                ));
            }
        }
    }
}
