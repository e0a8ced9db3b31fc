//! ESR_EL1 in words (Arm ARM D24.2.43: exception class, and the fault status code of
//! instruction/data aborts).

/// "data abort at the current EL: translation fault, level 3".
pub fn describe(esr: u64) -> String {
    let ec = (esr >> 26) & 0x3f;
    let class = match ec {
        0x00 => "unknown reason",
        0x01 => "WFI/WFE trapped",
        0x07 => "SVE/SIMD/FP access trapped",
        0x0e => "illegal execution state",
        0x15 => "SVC",
        0x16 => "HVC",
        0x17 => "SMC",
        0x18 => "system register access trapped",
        0x20 => "instruction abort from a lower EL",
        0x21 => "instruction abort at the current EL",
        0x22 => "PC alignment fault",
        0x24 => "data abort from a lower EL",
        0x25 => "data abort at the current EL",
        0x26 => "SP alignment fault",
        0x2f => "SError",
        0x3c => "BRK instruction",
        _ => return format!("exception class {ec:#x} (ESR {esr:#x})"),
    };
    if !matches!(ec, 0x20 | 0x21 | 0x24 | 0x25) {
        return format!("{class} (ESR {esr:#x})");
    }
    format!("{class}: {} (ESR {esr:#x})", fault_status(esr & 0x3f))
}

/// The DFSC/IFSC field in words.
pub fn fault_status(fsc: u64) -> String {
    let level = |base: u64| fsc as i64 - base as i64;
    match fsc {
        0x00..=0x03 => format!("address size fault, level {}", level(0x00)),
        0x29 => "address size fault, level -1".into(),
        0x04..=0x07 => format!("translation fault, level {}", level(0x04)),
        0x2b => "translation fault, level -1".into(),
        0x09..=0x0b => format!("access flag fault, level {}", level(0x08)),
        0x0d..=0x0f => format!("permission fault, level {}", level(0x0c)),
        0x10 => "synchronous external abort".into(),
        0x21 => "alignment fault".into(),
        0x30 => "TLB conflict abort".into(),
        _ => format!("fault status {fsc:#x}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_common_aborts() {
        assert_eq!(
            super::describe((0x25 << 26) | (1 << 25) | 0x07),
            "data abort at the current EL: translation fault, level 3 (ESR 0x96000007)"
        );
        assert!(super::describe((0x21 << 26) | 0x0d).contains("permission fault, level 1"));
        assert!(super::describe(0x3c << 26).starts_with("BRK"));
    }
}
