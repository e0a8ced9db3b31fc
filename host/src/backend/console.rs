//! What the guest prints: a bounded text buffer, filled by QEMU's stdout reader or
//! by the KVM backend's UART MMIO exits.

use std::sync::Mutex;

/// Append to a console buffer, keeping its last 64 KiB.
pub fn append(console: &Mutex<String>, text: &str) {
    if let Ok(mut s) = console.lock() {
        s.push_str(text);
        if s.len() > 65536 {
            let cut = s.len() - 65536;
            let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len());
            s.drain(..cut);
        }
    }
}

/// The last lines of a console buffer.
pub fn tail(console: &Mutex<String>) -> String {
    let text = console.lock().map(|c| c.clone()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}
