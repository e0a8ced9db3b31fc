//! The device tree a layout boots with: QEMU's own for the same machine options
//! (`-machine dumpdtb=`), read with the `fdt` crate and written out again with
//! rust-vmm's `vm-fdt`, with `/memory` (one node per bank), `/reserved-memory` (the
//! `no-map` regions) and `/chosen` (command line, initramfs, KASLR seed) replaced.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

use super::layout::Layout;

/// QEMU's DTB for `-M virt` with this `-cpu` and `-m` bytes of RAM.
///
/// # Errors
/// QEMU cannot run or does not write the file (its stderr is in the message).
pub fn dump_qemu_dtb(
    qemu: &Path,
    cpu: &str,
    accel: super::accel::Accel,
    ram: u64,
    dir: &Path,
) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(format!("qemu-{}.dtb", std::process::id()));
    let mut cmd = Command::new(qemu);
    crate::trace::use_own_files(&mut cmd, qemu);
    let out = cmd
        // RAM it never touches, reserved nowhere (`reserve=off`: a 256 GiB guest on a
        // smaller host is not refused by the kernel's overcommit check).
        .args(["-object", &format!("memory-backend-ram,id=dtbmem,size={ram},reserve=off")])
        .args([
            "-M",
            &format!("virt,dumpdtb={},memory-backend=dtbmem", path.display()),
            "-cpu",
            cpu,
            "-m",
            &format!("{}M", ram >> 20),
        ])
        .args(accel.qemu_args())
        .args(["-smp", "1", "-nodefaults", "-display", "none", "-nic", "none"])
        .output()
        .with_context(|| format!("cannot run {} (install qemu-system-arm)", qemu.display()))?;
    let bytes = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    match bytes {
        Ok(b) if !b.is_empty() => Ok(b),
        _ => bail!(
            "QEMU did not dump its DTB ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("")
        ),
    }
}

fn cells(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// `base` rewritten for `layout` (root `#address-cells` and `#size-cells` must be 2,
/// as on `virt`).
///
/// # Errors
/// `base` does not parse, or its root has other cell sizes.
pub fn rewrite(base: &[u8], layout: &Layout, initrd_end: u64) -> anyhow::Result<Vec<u8>> {
    let fdt = fdt::Fdt::new(base).map_err(|e| anyhow::anyhow!("QEMU's DTB does not parse: {e:?}"))?;
    let root = fdt.find_node("/").context("QEMU's DTB has no root node")?;
    let cs = root.cell_sizes();
    if (cs.address_cells, cs.size_cells) != (2, 2) {
        bail!(
            "QEMU's DTB root has #address-cells {} #size-cells {}: ptcheck writes 2/2",
            cs.address_cells,
            cs.size_cells
        );
    }
    let err = |e: vm_fdt::Error| anyhow::anyhow!("cannot write the DTB: {e}");
    let mut w = vm_fdt::FdtWriter::new().map_err(err)?;
    let top = w.begin_node("").map_err(err)?;
    for p in root.properties() {
        w.property(p.name, p.value).map_err(err)?;
    }
    for child in root.children() {
        let name = child.name;
        if name.starts_with("memory") || name == "chosen" || name == "reserved-memory" {
            continue;
        }
        copy_node(&mut w, child).map_err(err)?;
    }
    for b in &layout.banks {
        let n = w.begin_node(&format!("memory@{:x}", b.start)).map_err(err)?;
        w.property_string("device_type", "memory").map_err(err)?;
        w.property("reg", &cells(&[b.start, b.len()])).map_err(err)?;
        w.end_node(n).map_err(err)?;
    }
    if !layout.no_map.is_empty() {
        let rm = w.begin_node("reserved-memory").map_err(err)?;
        w.property_u32("#address-cells", 2).map_err(err)?;
        w.property_u32("#size-cells", 2).map_err(err)?;
        w.property_null("ranges").map_err(err)?;
        for r in &layout.no_map {
            let n = w.begin_node(&format!("ptcheck-hole@{:x}", r.start)).map_err(err)?;
            w.property("reg", &cells(&[r.start, r.len()])).map_err(err)?;
            w.property_null("no-map").map_err(err)?;
            w.end_node(n).map_err(err)?;
        }
        w.end_node(rm).map_err(err)?;
    }
    let chosen = w.begin_node("chosen").map_err(err)?;
    if let Some(stdout) = fdt.find_node("/chosen").and_then(|c| c.property("stdout-path")) {
        w.property("stdout-path", stdout.value).map_err(err)?;
    }
    w.property_string("bootargs", &layout.bootargs()).map_err(err)?;
    w.property_u64("linux,initrd-start", layout.initrd.start).map_err(err)?;
    w.property_u64("linux,initrd-end", initrd_end).map_err(err)?;
    if let Some(seed) = layout.kaslr_seed {
        w.property_u64("kaslr-seed", seed).map_err(err)?;
    }
    // A fixed rng-seed: the same layout boots the same way (QEMU's dump has a random one).
    w.property("rng-seed", &cells(&[layout.kaslr_seed.unwrap_or(0x5eed); 4])).map_err(err)?;
    w.end_node(chosen).map_err(err)?;
    w.end_node(top).map_err(err)?;
    w.finish().map_err(err)
}

fn copy_node(w: &mut vm_fdt::FdtWriter, node: fdt::node::FdtNode<'_, '_>) -> Result<(), vm_fdt::Error> {
    let n = w.begin_node(node.name)?;
    for p in node.properties() {
        w.property(p.name, p.value)?;
    }
    for c in node.children() {
        copy_node(w, c)?;
    }
    w.end_node(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::layout::{generate, Needs};

    /// Needs QEMU: the rewritten tree reads back with the layout's banks, holes and
    /// command line, and keeps every other node of QEMU's.
    #[test]
    #[ignore = "needs qemu-system-aarch64 (cargo xtask test runs it)"]
    fn rewritten_dtb_reads_back() {
        let l = (0..50)
            .map(|i| generate(3, i, Needs { image_size: 40 << 20, initrd_size: 6 << 20 }))
            .find(|l| l.banks.len() > 1 && !l.no_map.is_empty())
            .expect("a layout with two banks and a hole");
        let base = dump_qemu_dtb(
            std::path::Path::new("qemu-system-aarch64"),
            "max",
            crate::linux::accel::Accel::Tcg,
            l.ram_span(),
            &std::env::temp_dir(),
        )
        .unwrap();
        let out = rewrite(&base, &l, l.initrd.end).unwrap();
        let f = fdt::Fdt::new(&out).unwrap();
        let got: Vec<(u64, u64)> = f
            .all_nodes()
            .filter(|n| n.name.starts_with("memory@"))
            .flat_map(|n| n.reg().unwrap().map(|r| (r.starting_address as u64, r.size.unwrap() as u64)))
            .collect();
        let want: Vec<(u64, u64)> = l.banks.iter().map(|b| (b.start, b.len())).collect();
        assert_eq!(got, want);
        let holes = f.find_node("/reserved-memory").unwrap().children().filter(|c| c.property("no-map").is_some());
        assert_eq!(holes.count(), l.no_map.len());
        assert_eq!(f.chosen().bootargs(), Some(l.bootargs().as_str()));
        let base_f = fdt::Fdt::new(&base).unwrap();
        let names = |f: &fdt::Fdt| f.all_nodes().filter(|n| !n.name.starts_with("memory")).count();
        assert!(names(&f) >= names(&base_f), "a node of QEMU's was lost");
    }
}
