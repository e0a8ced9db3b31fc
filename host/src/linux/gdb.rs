//! A small client of QEMU's gdbstub (the GDB remote serial protocol): stop the vCPU,
//! learn the register numbers from the target description, read registers.
//!
//! Packets are `$data#xx` (xx: the modulo-256 sum of data, two hex digits), each
//! acknowledged with `+`. Binary replies (`qXfer`) escape `}`, `#`, `$` and `*` as
//! `}` followed by the byte XOR 0x20.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// A connection to a gdbstub.
pub struct Gdb {
    stream: TcpStream,
    /// Reads go through a buffer: the target description is hundreds of KiB, one
    /// byte at a time would be a syscall each.
    reader: std::io::BufReader<TcpStream>,
    /// Register name (as the target description spells it) -> number.
    regs: HashMap<String, u32>,
}

fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

impl Gdb {
    /// Connect to `127.0.0.1:port`, retrying until `within` has passed.
    ///
    /// # Errors
    /// Nothing listens there in time.
    pub fn connect(port: u16, within: Duration) -> anyhow::Result<Gdb> {
        let start = Instant::now();
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) if start.elapsed() < within => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e).with_context(|| format!("no gdbstub on port {port}")),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        // Many small request/ack exchanges (the target description comes in chunks):
        // without this, Nagle and delayed ACKs stall each one.
        stream.set_nodelay(true)?;
        let reader = std::io::BufReader::with_capacity(64 * 1024, stream.try_clone()?);
        Ok(Gdb { stream, reader, regs: HashMap::new() })
    }

    fn send(&mut self, data: &str) -> anyhow::Result<()> {
        let packet = format!("${data}#{:02x}", checksum(data.as_bytes()));
        self.stream.write_all(packet.as_bytes())?;
        Ok(())
    }

    /// The next packet's payload (unescaped), acknowledging it.
    fn receive(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut byte = [0u8; 1];
        // Skip acks and anything before the packet start.
        loop {
            self.reader.read_exact(&mut byte).context("the gdbstub closed the connection")?;
            if byte[0] == b'$' {
                break;
            }
        }
        let mut raw = Vec::new();
        loop {
            self.reader.read_exact(&mut byte)?;
            if byte[0] == b'#' {
                break;
            }
            raw.push(byte[0]);
        }
        let mut sum = [0u8; 2];
        self.reader.read_exact(&mut sum)?;
        let want = u8::from_str_radix(std::str::from_utf8(&sum)?, 16).context("bad checksum digits")?;
        if want != checksum(&raw) {
            self.stream.write_all(b"-")?;
            bail!("gdbstub packet checksum mismatch");
        }
        self.stream.write_all(b"+")?;
        let mut data = Vec::with_capacity(raw.len());
        let mut it = raw.into_iter();
        while let Some(b) = it.next() {
            if b == b'}' {
                data.push(it.next().unwrap_or(0) ^ 0x20);
            } else {
                data.push(b);
            }
        }
        Ok(data)
    }

    fn request(&mut self, data: &str) -> anyhow::Result<Vec<u8>> {
        self.send(data)?;
        self.receive()
    }

    /// Stop the vCPU (the protocol's interrupt byte) and wait for the stop reply.
    ///
    /// # Errors
    /// No stop reply.
    pub fn interrupt(&mut self) -> anyhow::Result<()> {
        // QEMU stops the VM when a debugger connects. 7.2 then answers the interrupt byte
        // with a stop reply; 8.1+ sends stop replies only once asked (`?`), so when
        // none comes soon, ask.
        self.stream.write_all(&[0x03])?;
        self.stream.set_read_timeout(Some(Duration::from_millis(300)))?;
        let first = self.receive();
        self.stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let reply = match first {
            Ok(r) => r,
            Err(_) => self.request("?")?,
        };
        if !matches!(reply.first(), Some(b'T' | b'S')) {
            bail!("unexpected reply to the interrupt: {}", String::from_utf8_lossy(&reply));
        }
        Ok(())
    }

    /// `c`: the vCPU runs on (a connection stops it). No reply comes until it stops.
    ///
    /// # Errors
    /// The socket is gone.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.send("c")
    }

    /// `g`: every register of the target description's core set, as the stub sends
    /// them (hex).
    ///
    /// # Errors
    /// An error reply.
    pub fn all_registers(&mut self) -> anyhow::Result<Vec<u8>> {
        let reply = self.request("g")?;
        if reply.first() == Some(&b'E') {
            bail!("cannot read the registers: {}", String::from_utf8_lossy(&reply));
        }
        Ok(reply)
    }

    /// `s`: execute one instruction (into an exception's vector if it takes one) and
    /// stop again.
    ///
    /// # Errors
    /// No stop reply.
    pub fn step(&mut self) -> anyhow::Result<()> {
        let reply = self.request("s")?;
        if !matches!(reply.first(), Some(b'T' | b'S')) {
            bail!("unexpected reply to a step: {}", String::from_utf8_lossy(&reply));
        }
        Ok(())
    }

    /// `k`: QEMU exits (cleanly: its plugins' exit callbacks run). No reply comes.
    ///
    /// # Errors
    /// The socket is gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.send("k")
    }

    fn read_object(&mut self, annex: &str) -> anyhow::Result<String> {
        let mut text = Vec::new();
        loop {
            let reply = self.request(&format!("qXfer:features:read:{annex}:{:x},{:x}", text.len(), 0x3000))?;
            match reply.split_first() {
                Some((b'm', rest)) => text.extend_from_slice(rest),
                Some((b'l', rest)) => {
                    text.extend_from_slice(rest);
                    break;
                }
                _ => bail!("cannot read {annex}: {}", String::from_utf8_lossy(&reply)),
            }
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// Learn every register's number from the target description and its includes.
    ///
    /// # Errors
    /// The description cannot be read.
    pub fn load_registers(&mut self) -> anyhow::Result<()> {
        let mut next = 0u32;
        let mut todo = vec!["target.xml".to_string()];
        let mut seen = 0;
        while let Some(annex) = todo.pop() {
            seen += 1;
            if seen > 32 {
                bail!("too many target description files");
            }
            let xml = self.read_object(&annex)?;
            let mut includes = Vec::new();
            for tag in xml.split('<').skip(1) {
                let attr = |name: &str| {
                    let key = format!("{name}=\"");
                    tag.find(&key).map(|i| &tag[i + key.len()..]).and_then(|r| r.split('"').next()).map(str::to_string)
                };
                if tag.starts_with("xi:include") {
                    includes.extend(attr("href"));
                } else if tag.starts_with("reg ") || tag.starts_with("reg\t") {
                    if let Some(n) = attr("regnum").and_then(|n| n.parse().ok()) {
                        next = n;
                    }
                    if let Some(name) = attr("name") {
                        self.regs.insert(name, next);
                    }
                    next += 1;
                }
            }
            // Includes come in document order; registers number in that order.
            todo.extend(includes.into_iter().rev());
        }
        Ok(())
    }

    /// Read register `name` (as the target description spells it) as a u64.
    ///
    /// # Errors
    /// Unknown register or unreadable.
    pub fn read_register(&mut self, name: &str) -> anyhow::Result<u64> {
        let n = *self
            .regs
            .get(name)
            .or_else(|| self.regs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
            .with_context(|| format!("the target description has no register {name}"))?;
        let reply = self.request(&format!("p{n:x}"))?;
        let hex = std::str::from_utf8(&reply)?;
        if hex.starts_with('E') || hex.len() < 2 {
            bail!("cannot read {name}: {hex}");
        }
        let mut value = 0u64;
        for (i, pair) in hex.as_bytes().chunks(2).take(8).enumerate() {
            let b = u8::from_str_radix(std::str::from_utf8(pair)?, 16)?;
            value |= u64::from(b) << (8 * i);
        }
        Ok(value)
    }
}
