//! What the tracer remembers, bounded: per 4 KiB frame of RAM, which 64-bit words were
//! written in the current build bracket and where the frame's last write sits against
//! the store-ordering barriers; global barrier counters; the registers that define the
//! live regime. Memory is allocated zeroed (lazily backed), so only frames the guest
//! writes cost memory: 96 bytes a frame, plus a 4 KiB shadow per live table (`live.rs`).

use std::fs::File;
use std::io::{BufWriter, Write as _};

use ptcheck_shared::trace::{Call, Counts, Finding, Link, Message, OrderedBy, TableWrite, Violation, RECENT_WRITES};

use crate::args::Options;
use crate::decode::{table_target, tlbi_va, Barrier, Hint, SysReg, Tlbi};
use crate::live::{Change, Live, Pending as Inval};
use crate::ram::Ram;
use crate::walk::{self, Regs};

const FRAME_SHIFT: u32 = 12;
const WORDS_PER_FRAME: u64 = 1 << (FRAME_SHIFT - 3);
/// Link messages one bracket may send before the rest are only counted.
const LINK_MESSAGES: u64 = 1 << 20;
/// Candidate links held until a walk confirms them.
const PENDING: usize = 1 << 18;
/// bbm / tlbi findings one bracket sends before the rest are only counted.
const FINDING_MESSAGES: u64 = 1 << 14;
/// Live table frames shadowed at most (a shadow is 4 KiB): past it, bbm and tlbi
/// cannot be judged and the summary says so.
const LIVE_FRAMES: usize = 1 << 16;
/// DC ZVA's block on QEMU's CPUs: DCZID_EL0.BS = 4, 2^4 words of 4 bytes.
const ZVA_BYTES: u64 = 64;

/// One 4 KiB frame's record: what its last write was and which words were written in
/// the current bracket. All-zero is "never written", so the array is allocated zeroed
/// (lazily backed by the kernel) and only frames the guest writes cost memory; one
/// record is two cache lines, touched together on every store.
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C)]
struct Frame {
    /// Bracket generation of the last write (0: never written).
    gen: u32,
    /// The store-ordering DSB / DMB counters at the last write.
    dsb: u32,
    dmb: u32,
    /// The last write's instruction word, PC and PA.
    insn: u32,
    pc: u64,
    pa: u64,
    /// Which words were written in generation `gen`.
    written: [u64; 8],
}

/// Per-frame records and bitmaps.
struct Frames {
    rec: Vec<Frame>,
    /// Frames known to hold translation tables (one bit each).
    table: Vec<u64>,
    /// Frames of the tables reachable from TTBR0/1 now.
    live: Vec<u64>,
    /// Frames a table descriptor has pointed to (confirmed or not): their stores are
    /// descriptor writes (`Counts::table_writes`), nothing else changes.
    linked: Vec<u64>,
}

/// The instruction behind a memory callback, fixed at translation.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    /// Its PC (as first translated) and word.
    pub pc: u64,
    /// See `pc`.
    pub insn: u32,
    /// A store-release.
    pub release: bool,
}

/// The tracer's whole state.
pub struct State {
    opts: Options,
    ram: Ram,
    frames: Frames,
    out: BufWriter<File>,
    gen: u32,
    /// Store-ordering DSBs and DMBs (a DSB counts as both) executed so far.
    dsb_n: u32,
    dmb_n: u32,
    /// The last of each: PC and instruction.
    last_dsb: (u64, u32),
    last_dmb: (u64, u32),
    regs: Regs,
    counts: Counts,
    link_messages: u64,
    /// Candidate links into pages not yet known as tables, judged at their store.
    pending: Vec<Link>,
    /// The live tables' shadows and pending invalidations.
    live: Live,
    finding_messages: u64,
    /// A problem found after install (reported in the summary's place).
    failed: Option<String>,
    /// ISBs executed before the current bracket (QEMU counts them inline; see
    /// [`State::isbs`]).
    isb_base: u64,
    /// The last DC ZVA's page translation (VA page, PA page): a clear is a run of
    /// DC ZVAs in one page. Dropped on anything that could change a translation:
    /// TTBR/TCR/SCTLR, a TLBI, a store into a table (the table and live bitmaps
    /// mark every table reached, whatever the shadows' limit).
    zva_page: Option<(u64, u64)>,
    /// The last table writes, a ring (`recent_n` written so far): sent as QEMU exits.
    recent: [TableWrite; RECENT_WRITES],
    recent_n: usize,
    /// The bracketed functions (`bracket=`), each with its open call if inside one.
    calls: Vec<Bracketed>,
}

/// One bracketed function, and the call of it the vCPU is inside.
struct Bracketed {
    entry: u64,
    /// Where the call returns to, the counts (instructions included) and the host
    /// time at its entry.
    open: Option<(u64, Counts, std::time::Instant)>,
}

/// What the plugin does after an instruction that may have ended a bracketed call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterReturn {
    /// Go on.
    Continue,
    /// The `stop=` function returned: everything is sent; end QEMU now.
    Stop,
}

impl State {
    /// Map RAM, allocate the frame records and open the output.
    ///
    /// # Errors
    /// RAM or the output cannot be opened.
    pub fn new(opts: Options, qemu_min: u32, qemu_cur: u32) -> Result<State, String> {
        let ram = Ram::open(&opts.ram, opts.ram_base, opts.ram_size)?;
        let n = (opts.ram_size >> FRAME_SHIFT) as usize;
        let frames = Frames {
            rec: bytemuck::zeroed_vec(n),
            table: vec![0; n.div_ceil(64)],
            live: vec![0; n.div_ceil(64)],
            linked: vec![0; n.div_ceil(64)],
        };
        let f = File::create(&opts.out).map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
        let regs = Regs { page_shift: opts.page_shift, ..Regs::default() };
        let calls = opts.brackets.iter().map(|&entry| Bracketed { entry, open: None }).collect();
        let mut s = State {
            opts,
            ram,
            frames,
            out: BufWriter::new(f),
            gen: 1,
            dsb_n: 0,
            dmb_n: 0,
            last_dsb: (0, 0),
            last_dmb: (0, 0),
            regs,
            counts: Counts::default(),
            link_messages: 0,
            pending: Vec::new(),
            live: Live::default(),
            finding_messages: 0,
            failed: None,
            isb_base: 0,
            zva_page: None,
            recent: [TableWrite::default(); RECENT_WRITES],
            recent_n: 0,
            calls,
        };
        let built_for = qemu_plugin::sys::QEMU_PLUGIN_VERSION;
        s.send(&Message::Hello { built_for, qemu_min, qemu_cur }, true);
        Ok(s)
    }

    fn send(&mut self, m: &Message, flush: bool) {
        let line = serde_json::to_string(m).expect("trace messages serialize");
        let _ = writeln!(self.out, "{line}");
        if flush {
            let _ = self.out.flush();
        }
    }

    /// Something went wrong inside the plugin: said on stderr, and the summary is
    /// withheld so ptcheck cannot take the trace as whole.
    pub fn fail(&mut self, why: String) {
        eprintln!("ptcheck-tracer: {why}");
        self.failed = Some(why);
    }

    /// ISBs executed since reset (`isbs`, from QEMU's inline counter): the bracket's
    /// count is what it executed since its beginning.
    pub fn isbs(&mut self, isbs: u64) {
        self.counts.isb = isbs.saturating_sub(self.isb_base);
    }

    /// QEMU is exiting: the counts since the last bracket began.
    pub fn finish(&mut self) {
        let n = self.recent_n.min(RECENT_WRITES);
        for i in self.recent_n - n..self.recent_n {
            let w = self.recent[i % RECENT_WRITES];
            self.send(&Message::TableWrite(w), false);
        }
        self.confirm();
        self.counts.unconfirmed += self.pending.len() as u64;
        self.pending.clear();
        if self.failed.is_none() {
            let c = self.counts;
            self.send(&Message::Summary(c), true);
        }
        let _ = self.out.flush();
    }

    /// A build marker; at the beginning x0 holds the regime's granule shift and x1 is
    /// non-zero for LPA2 descriptors.
    pub fn hint(&mut self, h: Hint, x0: u64, x1: u64) {
        match h {
            Hint::Begin => {
                if ![12, 14, 16].contains(&x0) {
                    self.fail(format!("build marker with granule shift {x0}"));
                }
                self.regs.fixed = Some((x0 as u32, x1 != 0));
                self.gen = self.gen.wrapping_add(1).max(1);
                self.isb_base += self.counts.isb;
                self.counts = Counts::default();
                self.link_messages = 0;
                self.finding_messages = 0;
                self.send(&Message::Begin, false);
            }
            Hint::End => {
                self.regs.fixed = None;
                let c = self.counts;
                self.send(&Message::Summary(c), true);
            }
        }
    }

    /// Where the open calls of bracketed functions return to.
    pub fn returns_to(&self) -> impl Iterator<Item = u64> + '_ {
        self.calls.iter().filter_map(|c| c.open.map(|(lr, _, _)| lr))
    }

    /// The bracketed function at `entry` was entered (`lr`: x30, its return address),
    /// with `insns` instructions and `isbs` ISBs executed so far. A call inside a call
    /// (recursion) is part of the outer one.
    pub fn enter(&mut self, entry: u64, lr: u64, insns: u64, isbs: u64) {
        self.isbs(isbs);
        let mut at = self.counts;
        at.insns = insns;
        for c in self.calls.iter_mut().filter(|c| c.entry == entry && c.open.is_none()) {
            c.open = Some((lr, at, std::time::Instant::now()));
        }
    }

    /// The instruction at `pc` ran, with `insns` instructions and `isbs` ISBs executed
    /// so far: every open call that returns there is sent; if one is the `stop=`
    /// function, the trace is finished and the plugin must end QEMU.
    pub fn returned(&mut self, pc: u64, insns: u64, isbs: u64) -> AfterReturn {
        self.isbs(isbs);
        let mut now = self.counts;
        now.insns = insns;
        let mut ended = Vec::new();
        for c in &mut self.calls {
            if let Some((lr, at, t)) = c.open.filter(|&(lr, _, _)| lr == pc) {
                let _ = lr;
                c.open = None;
                let emulated_ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                ended.push(Call { entry: c.entry, counts: now.since(&at), emulated_ns });
            }
        }
        let mut after = AfterReturn::Continue;
        for call in ended {
            self.send(&Message::Function(call), true);
            if self.opts.stop == Some(call.entry) {
                after = AfterReturn::Stop;
            }
        }
        if after == AfterReturn::Stop {
            self.finish();
            let entry = self.opts.stop.unwrap_or(0);
            self.send(&Message::Stopped { entry }, true);
        }
        after
    }

    /// A barrier or TLBI.
    pub fn barrier(&mut self, b: Barrier, pc: u64, insn: u32) {
        match b {
            Barrier::Dsb { orders_stores, completes_tlbi } => {
                self.counts.dsb += 1;
                if completes_tlbi {
                    self.counts.invalidations_done += self.live.dsb() as u64;
                }
                if orders_stores {
                    self.counts.dsb_st += 1;
                    self.dsb_n = self.dsb_n.wrapping_add(1);
                    self.dmb_n = self.dmb_n.wrapping_add(1);
                    self.last_dsb = (pc, insn);
                    self.last_dmb = (pc, insn);
                }
            }
            Barrier::Dmb { orders_stores } => {
                self.counts.dmb += 1;
                if orders_stores {
                    self.counts.dmb_st += 1;
                    self.dmb_n = self.dmb_n.wrapping_add(1);
                    self.last_dmb = (pc, insn);
                }
            }
            // Counted inline by QEMU, not called back (`isbs`).
            Barrier::Isb => {}
            Barrier::Tlbi(t) => self.tlbi(t, None, 0),
        }
    }

    /// A TLBI, with Xt for the by-VA forms.
    pub fn tlbi(&mut self, t: Tlbi, op: Option<usize>, xt: u64) {
        self.counts.tlbi += 1;
        if let Some(i) = op {
            self.counts.tlbi_ops[i] += 1;
        }
        self.zva_page = None;
        match t {
            Tlbi::All { leaf_only } => self.live.tlbi(None, leaf_only),
            Tlbi::Va { leaf_only, .. } => {
                let va = tlbi_va(xt);
                self.live.tlbi(Some((va, va | 0xfff)), leaf_only)
            }
            Tlbi::Other => 0,
        };
    }

    /// An access to `va` by `pc`: a tlbi finding if its translation was changed and
    /// not yet invalidated.
    fn access(&mut self, va: u64, pc: u64, insn: u32) {
        if self.live.nothing_pending() {
            return;
        }
        if let Some(p) = self.live.accessed(va) {
            self.counts.tlbi_findings += 1;
            self.finding(Violation::UsedBeforeInvalidated, pc, insn, &p, va);
        }
    }

    fn finding(&mut self, violation: Violation, pc: u64, insn: u32, p: &Inval, access_va: u64) {
        if self.finding_messages >= FINDING_MESSAGES {
            return;
        }
        self.finding_messages += 1;
        let f = Finding {
            violation,
            pc,
            insn,
            entry_pa: p.entry_pa,
            va: p.va,
            span_shift: p.span_shift,
            old: p.old,
            new: p.new,
            change_pc: p.pc,
            change_insn: p.insn,
            access_va,
        };
        self.send(&Message::Finding(f), true);
    }

    /// A store into a live table: break-before-make and the invalidations it needs.
    fn live_store(&mut self, pa: u64, v: u64, pc: u64, insn: u32) {
        // The bitmap (a superset of the shadowed frames) turns away most stores before
        // the hash lookup.
        if !bit(&self.frames.live, self.frame(pa)) || !self.live.contains(pa) {
            return;
        }
        let (change, needs) = self.live.store(pa, v, pc, insn);
        self.counts.live_changes += 1;
        self.counts.invalidations_needed += u64::from(needs);
        match change {
            Change::None => {}
            Change::ValidToValid { p } => {
                self.counts.bbm += 1;
                self.finding(Violation::ValidToValid, pc, insn, &p, 0);
            }
            Change::Remade { p, pending } => {
                self.counts.bbm += 1;
                let q = Inval { new: p.new, ..pending };
                self.finding(Violation::RemadeBeforeInvalidated, pc, insn, &q, 0);
            }
        }
    }

    /// `MSR reg, <v>`.
    pub fn msr(&mut self, reg: SysReg, v: u64) {
        self.zva_page = None;
        match reg {
            SysReg::Ttbr0 => {
                self.counts.msr_ttbr0 += 1;
                self.regs.ttbr0 = v;
                self.confirm();
            }
            SysReg::Ttbr1 => {
                self.counts.msr_ttbr1 += 1;
                self.regs.ttbr1 = v;
                self.confirm();
            }
            SysReg::Tcr => {
                self.counts.msr_tcr += 1;
                self.regs.set_tcr(v);
            }
            SysReg::Sctlr => {
                self.counts.msr_sctlr += 1;
                self.regs.sctlr = v;
            }
        }
    }

    /// `DC ZVA` of the block holding `va`.
    pub fn dc_zva(&mut self, va: u64, pc: u64, insn: u32) {
        self.counts.dc_zva += 1;
        self.access(va, pc, insn);
        let page = va & !0xfff;
        let pa = match self.zva_page {
            Some((v, p)) if v == page => p | (va & 0xfff),
            _ => {
                let Some(pa) = walk::translate(&self.ram, &self.regs, va) else { return };
                self.zva_page = Some((page, pa & !0xfff));
                pa
            }
        };
        let pa = pa & !(ZVA_BYTES - 1);
        if !self.ram.contains(pa, ZVA_BYTES) {
            return;
        }
        self.counts.dc_zva_ram += 1;
        for w in (pa..pa + ZVA_BYTES).step_by(8) {
            self.wrote(w, pc, insn);
            self.live_store(w, 0, pc, insn);
        }
    }

    /// A store of `size` bytes at `pa` (from a memory callback, after the store).
    pub fn store(&mut self, pa: u64, va: u64, size: u64, site: Site) {
        let Site { pc, insn, release } = site;
        if !self.ram.contains(pa, size) {
            return;
        }
        self.access(va, pc, insn);
        self.counts.ram_stores += 1;
        if self.opts.fixmap.is_some_and(|(lo, hi)| pa >= lo && pa < hi) {
            self.counts.fixmap_writes += 1;
        }
        if self.zva_page.is_some() && self.may_translate(pa) {
            self.zva_page = None;
        }
        if release {
            self.counts.stlr += 1;
        }
        let first = pa & !7;
        for w in (first..pa + size).step_by(8) {
            self.wrote(w, pc, insn);
        }
        if !pa.is_multiple_of(8) {
            return;
        }
        // Descriptors are aligned 64-bit words: a 64-bit store, or a 128-bit one (STP,
        // a Q register) as two.
        if size < 8 {
            return;
        }
        let release = release && size == 8;
        for w in (pa..pa + size).step_by(8) {
            let v = self.ram.read_u64(w).unwrap_or(0);
            let f = self.frame(w);
            if bit(&self.frames.table, f) || bit(&self.frames.linked, f) {
                self.counts.table_writes += 1;
            }
            if self.is_table(w) {
                let live = self.may_translate(w);
                self.recent[self.recent_n % RECENT_WRITES] = TableWrite { pc, insn, entry_pa: w, value: v, live };
                self.recent_n += 1;
            }
            self.live_store(w, v, pc, insn);
            self.maybe_link(w, v, pc, insn, release);
        }
    }

    /// Record a write to the word at `w` (8-aligned, in RAM).
    fn wrote(&mut self, w: u64, pc: u64, insn: u32) {
        let f = self.frame(w);
        let (gen, dsb, dmb) = (self.gen, self.dsb_n, self.dmb_n);
        let fr = &mut self.frames.rec[f];
        if fr.gen != gen {
            fr.gen = gen;
            fr.written = [0; 8];
        }
        let word = ((w >> 3) & (WORDS_PER_FRAME - 1)) as usize;
        fr.written[word / 64] |= 1 << (word % 64);
        fr.dsb = dsb;
        fr.dmb = dmb;
        fr.insn = insn;
        fr.pc = pc;
        fr.pa = w;
    }

    fn written(&self, w: u64) -> bool {
        let f = self.frame(w);
        let word = ((w >> 3) & (WORDS_PER_FRAME - 1)) as usize;
        let fr = &self.frames.rec[f];
        fr.gen == self.gen && fr.written[word / 64] & (1 << (word % 64)) != 0
    }

    fn in_window(&self, pa: u64, len: u64) -> bool {
        if !self.ram.contains(pa, len) {
            return false;
        }
        self.opts.tables.is_empty() || self.opts.tables.iter().any(|&(lo, hi)| pa >= lo && pa + len <= hi)
    }

    /// The 64-bit word `v` was just stored at `entry_pa`: if it links a table, judge the
    /// table as it is now and what ordered its last write before this store.
    fn maybe_link(&mut self, entry_pa: u64, v: u64, pc: u64, insn: u32, release: bool) {
        let shift = self.regs.shift();
        let Some(table) = table_target(v, shift, self.regs.lpa2()) else { return };
        let bytes = 1u64 << shift;
        if !self.in_window(table, bytes) || (table..table + bytes).contains(&entry_pa) {
            return;
        }
        // Zeroed at the link: every entry zero, or written in this bracket.
        let (mut stale, mut first_stale) = (0u32, (0, 0));
        for w in (table..table + bytes).step_by(8) {
            let x = self.ram.read_u64(w).unwrap_or(0);
            if x != 0 && !self.written(w) {
                if stale == 0 {
                    first_stale = (w, x);
                }
                stale += 1;
            }
        }
        // Ordered: the weakest of the table's frames' last writes.
        let mut ordered = OrderedBy::NoWrite;
        let mut last = (0u64, 0u32, 0u64);
        let rank = |o: OrderedBy| match o {
            OrderedBy::NoWrite => 0,
            OrderedBy::Dsb => 1,
            OrderedBy::Dmb => 2,
            OrderedBy::Release => 3,
            OrderedBy::Nothing => 4,
        };
        for f in self.frame(table)..=self.frame(table + bytes - 1) {
            let fr = &self.frames.rec[f];
            if fr.gen != self.gen {
                continue;
            }
            let o = if fr.dsb != self.dsb_n {
                OrderedBy::Dsb
            } else if fr.dmb != self.dmb_n {
                OrderedBy::Dmb
            } else if release {
                OrderedBy::Release
            } else {
                OrderedBy::Nothing
            };
            if rank(o) >= rank(ordered) {
                ordered = o;
                last = (fr.pc, fr.insn, fr.pa);
            }
        }
        let barrier = match ordered {
            OrderedBy::Dsb => self.last_dsb,
            OrderedBy::Dmb => self.last_dmb,
            _ => (0, 0),
        };
        let link = Link {
            pc,
            insn,
            entry_pa,
            value: v,
            table_pa: table,
            live: self.regs.sctlr & 1 != 0 && bit(&self.frames.live, self.frame(entry_pa)),
            ordered_by: ordered,
            barrier_pc: barrier.0,
            barrier_insn: barrier.1,
            last_write_pc: last.0,
            last_write_insn: last.1,
            last_write_pa: last.2,
            stale,
            first_stale_pa: first_stale.0,
            first_stale_value: first_stale.1,
        };
        self.counts.table_links += 1;
        for f in self.frame(table)..=self.frame(table + bytes - 1) {
            self.frames.linked[f / 64] |= 1 << (f % 64);
        }
        let known = if self.opts.tables.is_empty() { self.is_table(entry_pa) } else { self.in_window(entry_pa, 8) };
        if known {
            self.accept(link);
        } else if self.pending.len() < PENDING {
            self.pending.push(link);
        } else {
            self.counts.links_dropped += 1;
        }
    }

    /// Whether a store at `pa` can change a translation: it is in a live table, a
    /// table, or (a plan) a pool window, whose tree the walk may follow.
    fn may_translate(&self, pa: u64) -> bool {
        let f = self.frame(pa);
        bit(&self.frames.live, f)
            || bit(&self.frames.table, f)
            || (!self.opts.tables.is_empty() && self.in_window(pa, 8))
    }

    fn frame(&self, pa: u64) -> usize {
        debug_assert!(self.ram.contains(pa, 1));
        ((pa - self.ram.base()) >> FRAME_SHIFT) as usize
    }

    fn is_table(&self, pa: u64) -> bool {
        bit(&self.frames.table, self.frame(pa))
    }

    /// Mark `[pa, pa + bytes)` as a table, and live if `live`.
    fn mark_table(&mut self, pa: u64, bytes: u64, live: bool) {
        if !self.ram.contains(pa, bytes) {
            return;
        }
        for f in self.frame(pa)..=self.frame(pa + bytes - 1) {
            self.frames.table[f / 64] |= 1 << (f % 64);
            if live {
                self.frames.live[f / 64] |= 1 << (f % 64);
            }
        }
    }

    /// A confirmed link: counted, its table known, sent if doubtful (or all are).
    fn accept(&mut self, link: Link) {
        self.mark_table(link.table_pa, 1 << self.regs.shift(), link.live);
        // A table linked into a live one is live: shadow it.
        if link.live {
            if let Some((parent, index)) = self.live.table_of(link.entry_pa) {
                if parent.below > 0 {
                    let child = parent.child(index, link.value);
                    let ram = &self.ram;
                    self.live.add(&child, &|pa| ram.read_u64(pa).unwrap_or(0));
                }
            }
        }
        self.counts.links[Counts::link_index(link.ordered_by)] += 1;
        if link.stale > 0 {
            self.counts.stale_links += 1;
        }
        let doubtful = link.stale > 0 || !matches!(link.ordered_by, OrderedBy::Dsb | OrderedBy::NoWrite);
        if !(self.opts.links_all || doubtful) {
            return;
        }
        if self.link_messages >= LINK_MESSAGES {
            self.counts.links_dropped += 1;
            return;
        }
        self.link_messages += 1;
        self.send(&Message::Link(link), doubtful);
    }

    /// Walk the trees TTBR0/1 point to now, marking their tables, and accept the
    /// candidates whose entry lies in one and still holds what was stored.
    fn confirm(&mut self) {
        // A plan's window: links are confirmed at their store; its tree goes live on
        // TTBR1 only for probing, after the build, so only TTBR0 (the guest's own map
        // and fixmap) is followed.
        let windowed = !self.opts.tables.is_empty();
        let mut found = Vec::new();
        for upper in [false, true] {
            if upper && windowed {
                continue;
            }
            walk::tables(&self.ram, &self.regs, upper, &mut |t| found.push(*t));
        }
        self.frames.live.fill(0);
        self.live.clear();
        for t in &found {
            self.mark_table(t.pa, t.bytes, true);
            if self.live.frames() < LIVE_FRAMES {
                let ram = &self.ram;
                self.live.add(t, &|pa| ram.read_u64(pa).unwrap_or(0));
            } else {
                self.counts.live_over_capacity += 1;
            }
        }
        if windowed {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        for l in pending {
            if self.is_table(l.entry_pa) && self.ram.read_u64(l.entry_pa) == Some(l.value) {
                self.accept(l);
            } else {
                self.pending.push(l);
            }
        }
    }
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

#[cfg(test)]
mod tests {
    //! The link judgement on hand-made stores, the way QEMU's callbacks drive it: RAM is
    //! written first (the callback runs after the store), then `store` is called.
    use std::os::unix::fs::FileExt as _;
    use std::path::PathBuf;

    use super::*;
    use ptcheck_shared::trace::tlbi_op;

    const BASE: u64 = 0x4000_0000;
    const SIZE: u64 = 0x10000;
    const PARENT: u64 = BASE + 0x1000;
    const CHILD: u64 = BASE + 0x2000;
    const STR: Site = Site { pc: 0x8000, insn: 0xf900_0001, release: false };
    const DSB_ISHST: Barrier = Barrier::Dsb { orders_stores: true, completes_tlbi: false };

    struct Rig {
        st: State,
        ram: File,
        out: PathBuf,
    }

    impl Rig {
        /// 64 KiB of zeroed RAM at `BASE`, every link reported, inside a build bracket.
        fn new(name: &str) -> Rig {
            let dir = std::env::temp_dir().join(format!("ptcheck-tracer-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let (ram_path, out) = (dir.join("ram"), dir.join("out"));
            let ram = File::options().read(true).write(true).create(true).truncate(true).open(&ram_path).unwrap();
            ram.set_len(SIZE).unwrap();
            let opts = Options {
                out: out.clone(),
                ram: ram_path,
                ram_base: BASE,
                ram_size: SIZE,
                page_shift: 12,
                tables: vec![(BASE, BASE + SIZE)],
                links_all: true,
                brackets: vec![0x6000, 0x6800],
                stop: Some(0x6800),
                fixmap: Some((CHILD + 8, CHILD + 16)),
            };
            let mut st = State::new(opts, 4, 4).unwrap();
            st.hint(Hint::Begin, 12, 0);
            Rig { st, ram, out }
        }

        /// What the guest's store does to RAM, without the tracer seeing it.
        fn poke(&self, pa: u64, v: u64) {
            self.ram.write_all_at(&v.to_le_bytes(), pa - BASE).unwrap();
        }

        fn store(&mut self, pa: u64, v: u64, site: Site) {
            self.poke(pa, v);
            self.st.store(pa, pa, 8, site);
        }

        fn clear_child(&mut self) {
            for w in (CHILD..CHILD + 0x1000).step_by(8) {
                self.store(w, 0, STR);
            }
        }

        /// What the tracer wrote, and the messages `pick` takes from it.
        fn sent<T>(&self, pick: fn(Message) -> Option<T>) -> (String, Vec<T>) {
            let text = std::fs::read_to_string(&self.out).unwrap();
            let picked = text.lines().filter_map(|l| pick(serde_json::from_str(l).unwrap())).collect();
            (text, picked)
        }

        fn link(&mut self, site: Site) -> Link {
            self.store(PARENT, CHILD | 3, site);
            self.st.finish();
            let (text, links) = self.sent(|m| match m {
                Message::Link(k) => Some(k),
                _ => None,
            });
            assert_eq!(links.len(), 1, "{text}");
            links[0]
        }
    }

    #[test]
    fn cleared_then_dsb_then_linked() {
        let mut r = Rig::new("dsb");
        r.clear_child();
        r.st.barrier(DSB_ISHST, 0x8100, 0xd503_3a9f);
        let l = r.link(STR);
        assert_eq!((l.ordered_by, l.stale, l.table_pa, l.entry_pa), (OrderedBy::Dsb, 0, CHILD, PARENT));
        assert_eq!((l.barrier_pc, l.last_write_pa), (0x8100, CHILD + 0xff8));
    }

    #[test]
    fn a_link_with_nothing_between_is_unordered() {
        let mut r = Rig::new("nothing");
        r.clear_child();
        assert_eq!(r.link(STR).ordered_by, OrderedBy::Nothing);
    }

    #[test]
    fn a_store_release_link_is_ordered_by_itself() {
        let mut r = Rig::new("release");
        r.clear_child();
        assert_eq!(r.link(Site { release: true, ..STR }).ordered_by, OrderedBy::Release);
    }

    #[test]
    fn a_barrier_before_the_last_clear_does_not_count() {
        let mut r = Rig::new("late");
        r.st.barrier(DSB_ISHST, 0x8100, 0xd503_3a9f);
        r.clear_child();
        assert_eq!(r.link(STR).ordered_by, OrderedBy::Nothing);
    }

    #[test]
    fn stale_entries_are_named() {
        let mut r = Rig::new("stale");
        r.poke(CHILD + 0x40, 0x5054_4348_4543_4b00);
        let l = r.link(STR);
        assert_eq!((l.stale, l.first_stale_pa, l.first_stale_value), (1, CHILD + 0x40, 0x5054_4348_4543_4b00));
        assert_eq!(l.ordered_by, OrderedBy::NoWrite);
    }

    #[test]
    fn a_bracket_counts_the_isbs_executed_inside_it() {
        let mut r = Rig::new("isb");
        r.st.isbs(1000);
        r.st.hint(Hint::Begin, 12, 0);
        r.st.isbs(1007);
        r.st.hint(Hint::End, 0, 0);
        let text = std::fs::read_to_string(&r.out).unwrap();
        let mut last = text.lines().filter_map(|l| match serde_json::from_str(l).unwrap() {
            Message::Summary(c) => Some(c),
            _ => None,
        });
        assert_eq!(last.next_back().map(|c| c.isb), Some(7), "{text}");
    }

    #[test]
    fn a_128_bit_store_is_two_words() {
        let mut r = Rig::new("stp");
        r.clear_child();
        r.st.barrier(DSB_ISHST, 0x8100, 0xd503_3a9f);
        r.poke(PARENT, 0);
        r.poke(PARENT + 8, CHILD | 3);
        r.st.store(PARENT, PARENT, 16, STR);
        r.st.finish();
        let text = std::fs::read_to_string(&r.out).unwrap();
        assert!(text.contains(&format!("\"entry_pa\":{}", PARENT + 8)), "{text}");
    }

    #[test]
    fn the_last_table_writes_are_sent_at_exit_oldest_first() {
        let mut r = Rig::new("recent");
        r.clear_child();
        r.st.barrier(DSB_ISHST, 0x8100, 0xd503_3a9f);
        r.store(PARENT, CHILD | 3, STR);
        // The child is a table now: ten more writes into it, the last eight kept.
        for i in 0..10u64 {
            r.store(CHILD + 8 * i, 0x4000_0000 + i, Site { pc: 0x9000 + 4 * i, ..STR });
        }
        r.st.finish();
        let (text, writes) = r.sent(|m| match m {
            Message::TableWrite(w) => Some(w),
            _ => None,
        });
        assert_eq!(writes.len(), RECENT_WRITES, "{text}");
        assert_eq!((writes[0].entry_pa, writes[0].value, writes[0].pc), (CHILD + 16, 0x4000_0002, 0x9008));
        assert_eq!(writes.last().map(|w| w.entry_pa), Some(CHILD + 72));
        // Sent before the summary, which ends the trace.
        assert!(text.lines().last().is_some_and(|l| l.contains("summary")), "{text}");
    }

    #[test]
    fn a_bracketed_call_counts_from_its_entry_to_its_return() {
        let mut r = Rig::new("bracket");
        r.st.barrier(DSB_ISHST, 0x8100, 0xd503_3a9f);
        r.st.enter(0x6000, 0x7000, 1000, 3);
        r.st.barrier(DSB_ISHST, 0x8104, 0xd503_3a9f);
        // tlbi vaale1is, x0; tlbi vmalle1.
        r.st.tlbi(Tlbi::All { leaf_only: false }, tlbi_op(0xd508_83e0), 0);
        r.st.tlbi(Tlbi::All { leaf_only: false }, tlbi_op(0xd508_871f), 0);
        r.store(CHILD, 1, STR);
        // A store into the fixmap's PTEs.
        r.store(CHILD + 8, 2, STR);
        // Another call's return address, then the real one.
        assert_eq!(r.st.returned(0x7004, 1500, 4), AfterReturn::Continue);
        assert_eq!(r.st.returned(0x7000, 1900, 5), AfterReturn::Continue);
        r.st.finish();
        let (text, calls) = r.sent(|m| match m {
            Message::Function(c) => Some(c),
            _ => None,
        });
        assert_eq!(calls.len(), 1, "{text}");
        let c = calls[0].counts;
        assert_eq!(calls[0].entry, 0x6000);
        assert_eq!((c.insns, c.isb, c.dsb, c.tlbi, c.ram_stores, c.fixmap_writes), (900, 2, 1, 2, 2, 1), "{text}");
        let ops: Vec<(&str, u64)> = c.tlbis_by_op().collect();
        assert_eq!(ops, [("vaale1is", 1), ("vmalle1", 1)], "{text}");
    }

    #[test]
    fn the_stop_function_returning_ends_the_trace_with_its_call_inside_the_other() {
        let mut r = Rig::new("stop");
        r.st.enter(0x6800, 0x7100, 10, 0);
        r.st.enter(0x6000, 0x7000, 20, 0);
        r.store(CHILD, 1, STR);
        assert_eq!(r.st.returned(0x7000, 50, 0), AfterReturn::Continue);
        r.store(CHILD + 8, 1, STR);
        assert_eq!(r.st.returned(0x7100, 80, 0), AfterReturn::Stop);
        let (text, calls) = r.sent(|m| match m {
            Message::Function(c) => Some((c.entry, c.counts.insns, c.counts.ram_stores)),
            _ => None,
        });
        assert_eq!(calls, [(0x6000, 30, 1), (0x6800, 70, 2)], "{text}");
        let last: Vec<&str> = text.lines().rev().take(2).collect();
        assert!(last[0].contains("stopped") && last[1].contains("summary"), "{text}");
    }
}
