//! The mailbox: how the host asks a running guest to do something.
//!
//! The host writes the plan, then `command`, then publishes `request_seq` with release
//! ordering. The guest waits for a new `request_seq` with acquire ordering, acts, and
//! publishes `response_seq = request_seq` with release ordering; the host waits for
//! that with acquire ordering and then reads the result. One boot serves any number
//! of plans this way.

use bytemuck::{Pod, Zeroable};

/// `ready` once the guest has its MMU on and waits for requests.
pub const GUEST_READY: u64 = u64::from_le_bytes(*b"PTCKRDY1");

/// What the host asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Command {
    /// Run the plan at `PLAN_PA`, write the result at `RESULT_PA`.
    RunPlan = 1,
    /// PSCI SYSTEM_OFF.
    PowerOff = 2,
    /// Never answer: lets tests prove the host's watchdog.
    Hang = 3,
}

impl Command {
    /// Decode the mailbox word.
    pub fn from_u64(v: u64) -> Option<Command> {
        Some(match v {
            1 => Command::RunPlan,
            2 => Command::PowerOff,
            3 => Command::Hang,
            _ => return None,
        })
    }
}

/// The mailbox record at `MAILBOX_PA`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Mailbox {
    /// [`GUEST_READY`] once the guest is up.
    pub ready: u64,
    /// Bumped by the host for each request.
    pub request_seq: u64,
    /// Set by the guest to the request it finished.
    pub response_seq: u64,
    /// The [`Command`] of the current request.
    pub command: u64,
    /// ID_AA64MMFR0_EL1 read at boot.
    pub id_mmfr0: u64,
    /// ID_AA64MMFR2_EL1 read at boot.
    pub id_mmfr2: u64,
    /// What this guest image can do: [`Mailbox::CATALOGUE`].
    pub features: u64,
}

impl Mailbox {
    /// The image has the bug catalogue: `Plan::mutation` selects a variant.
    pub const CATALOGUE: u64 = 1 << 0;
}

/// Byte offset of `request_seq` in the mailbox.
pub const REQUEST_SEQ_OFFSET: u64 = 8;
/// Byte offset of `response_seq`.
pub const RESPONSE_SEQ_OFFSET: u64 = 16;
/// Byte offset of `command`.
pub const COMMAND_OFFSET: u64 = 24;
