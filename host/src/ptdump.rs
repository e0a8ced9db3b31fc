//! ptdump-style listings: one line per run of like mappings (VA range, size, level,
//! block/page, contiguous, PA, attributes), and a diff of two listings.

use ptcheck_shared::{Level, Prot, TranslationConfig};

use crate::runs::LeafRun;

/// One line of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// First VA.
    pub va: u64,
    /// One past the last VA (u128: the top of the address space is 2^64).
    pub end: u128,
    /// PA of `va`.
    pub pa: u64,
    /// Level of the entries.
    pub level: Level,
    /// Attributes.
    pub prot: Prot,
    /// Contiguous hint.
    pub cont: bool,
}

/// Merge leaf runs (VA order) into rows of like, physically contiguous mappings.
pub fn rows(cfg: &TranslationConfig, runs: &[LeafRun]) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for r in runs {
        let (va, pa, prot, cont, level) = (r.va, r.pa(cfg), r.prot(cfg), r.desc.is_contiguous(), r.level);
        if let Some(last) = out.last_mut() {
            let len = (last.end - u128::from(last.va)) as u64;
            if last.end == u128::from(va)
                && last.level == level
                && last.prot == prot
                && last.cont == cont
                && last.pa.wrapping_add(len) == pa
            {
                last.end += r.bytes(cfg);
                continue;
            }
        }
        out.push(Row { va, end: r.end(cfg), pa, level, prot, cont });
    }
    out
}

fn size(bytes: u128) -> String {
    let units = [(1u128 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    for (unit, name) in units {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    format!("{bytes}B")
}

fn attrs(p: Prot) -> String {
    let mem = match p.attr_index() {
        Prot::MT_NORMAL => "normal",
        Prot::MT_NORMAL_TAGGED => "tagged",
        Prot::MT_NORMAL_NC => "normal-nc",
        Prot::MT_DEVICE_NGNRE => "device",
        _ => "attr?",
    };
    let rw = if p.0 & Prot::RDONLY != 0 { "ro" } else { "RW" };
    let x = if p.0 & Prot::PXN != 0 { "NX" } else { "x" };
    let ng = if p.0 & Prot::NG != 0 { " nG" } else { "" };
    let af = if p.0 & Prot::AF == 0 { " !AF" } else { "" };
    format!("{rw} {x} {mem}{ng}{af}")
}

/// One row as text.
pub fn line(r: &Row) -> String {
    let shape = if r.level == Level::LEAF { "page" } else { "block" };
    let cont = if r.cont { " cont" } else { "" };
    format!(
        "{:#018x}-{:#018x} {:>6} {} {shape:<5}{cont:<5} -> {:#014x}  {}",
        r.va,
        // As Linux's ptdump prints it: the end of the address space is 0x0000000000000000.
        r.end as u64,
        size(r.end - u128::from(r.va)),
        r.level,
        r.pa,
        attrs(r.prot)
    )
}

/// Both listings merged in VA order: `  ` same, `- ` expected only, `+ ` actual only.
pub fn diff(expected: &[Row], actual: &[Row]) -> (String, usize) {
    let (mut out, mut differing) = (String::new(), 0);
    let (mut i, mut j) = (0, 0);
    while i < expected.len() || j < actual.len() {
        let (e, a) = (expected.get(i), actual.get(j));
        let (mark, row) = match (e, a) {
            (Some(e), Some(a)) if e == a => {
                i += 1;
                j += 1;
                ("  ", e)
            }
            (Some(e), Some(a)) if (e.va, e.end) <= (a.va, a.end) => {
                i += 1;
                ("- ", e)
            }
            (Some(_), Some(a)) | (None, Some(a)) => {
                j += 1;
                ("+ ", a)
            }
            (Some(e), None) => {
                i += 1;
                ("- ", e)
            }
            (None, None) => unreachable!(),
        };
        if mark != "  " {
            differing += 1;
        }
        out.push_str(mark);
        out.push_str(&line(row));
        out.push('\n');
    }
    (out, differing)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The top of the address space prints as Linux's ptdump prints it: the end
    /// address wraps to 0x0000000000000000, never a 17-digit number.
    #[test]
    fn the_end_of_the_address_space_prints_like_linux() {
        let row = Row {
            va: 0xffff_ffff_ffff_f000,
            end: 1 << 64,
            pa: 0x4100_0000,
            level: Level::LEAF,
            prot: Prot::KERNEL,
            cont: false,
        };
        let text = line(&row);
        assert!(text.starts_with("0xfffffffffffff000-0x0000000000000000     4K L3 page"), "{text}");
    }
}
