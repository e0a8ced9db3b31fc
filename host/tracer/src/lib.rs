//! ptcheck's tracer: a QEMU TCG plugin that watches a page-table builder from the
//! instruction stream, so ordering is observed rather than self-reported.
//!
//! Loaded as `-plugin libptcheck_tracer.so,out=F,ram=P,ram_base=B,ram_size=S,
//! page_shift=N[,tables=LO-HI][,tables=…][,links=all]`: `ram` is the guest RAM's
//! memfd (shared with ptcheck, mapped here read-only) so a linked table's content is
//! judged by value at the moment it is linked; `tables` limits what counts as a link
//! to next-level tables inside those windows (a plan's pools; default all of RAM).
//!
//! One module each: [`decode`] (A64 encodings and descriptor bits), [`state`] (the
//! bounded per-frame state and the link judgement), [`live`] (the live tables' shadows,
//! break-before-make and pending TLB invalidations), [`walk`] (DC ZVA's VA through the
//! live tables), `plugin` (QEMU's callbacks). Output is
//! [`ptcheck_shared::trace::Message`] lines.
#![deny(unsafe_op_in_unsafe_fn)]
// The unit tests build without `plugin`, the only caller of much of the state.
#![cfg_attr(test, allow(dead_code))]

mod args;
mod decode;
mod live;
// QEMU's side: the callbacks. Left out of the unit tests, whose binary would need
// QEMU's qemu_plugin_* symbols to link.
#[cfg(not(test))]
mod plugin;
mod ram;
mod state;
mod walk;
