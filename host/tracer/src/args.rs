//! The plugin's arguments (`-plugin lib.so,key=value,…`).

use std::path::PathBuf;

/// What ptcheck told the plugin.
pub struct Options {
    /// Where the JSON lines go.
    pub out: PathBuf,
    /// The guest RAM's file (a memfd path), its guest-physical base and size.
    pub ram: PathBuf,
    /// See `ram`.
    pub ram_base: u64,
    /// See `ram`.
    pub ram_size: u64,
    /// The translation granule's shift until TCR_EL1 is written (12, 14 or 16).
    pub page_shift: u32,
    /// Windows a linked table must lie in (`[lo, hi)`); empty: all of RAM.
    pub tables: Vec<(u64, u64)>,
    /// Send every link, not only the doubtful ones.
    pub links_all: bool,
    /// Functions' entry VAs (a real kernel's `map_mem`, `paging_init`): count from
    /// each call to its return, instructions included (`Message::Function`).
    pub brackets: Vec<u64>,
    /// One of `brackets`: when its call returns, send everything and end QEMU
    /// (`Message::Stopped`) — what comes after is not paid for.
    pub stop: Option<u64>,
    /// Where the fixmap's PTE tables are (`[lo, hi)`, physical: a kernel's `bm_pte`):
    /// stores there are counted.
    pub fixmap: Option<(u64, u64)>,
}

/// Functions one run may bracket.
pub const MAX_BRACKETS: usize = 4;

fn number(key: &str, v: &str) -> Result<u64, String> {
    let r = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    r.map_err(|_| format!("{key}={v} is not a number"))
}

/// Parse `key=value` arguments.
///
/// # Errors
/// A missing or malformed argument, named.
pub fn parse(raw: &[String]) -> Result<Options, String> {
    let mut o = Options {
        out: PathBuf::new(),
        ram: PathBuf::new(),
        ram_base: 0,
        ram_size: 0,
        page_shift: 12,
        tables: Vec::new(),
        links_all: false,
        brackets: Vec::new(),
        stop: None,
        fixmap: None,
    };
    for a in raw {
        let (k, v) = a.split_once('=').ok_or(format!("argument {a} is not key=value"))?;
        match k {
            "out" => o.out = v.into(),
            "ram" => o.ram = v.into(),
            "ram_base" => o.ram_base = number(k, v)?,
            "ram_size" => o.ram_size = number(k, v)?,
            "page_shift" => {
                o.page_shift = number(k, v)? as u32;
                if ![12, 14, 16].contains(&o.page_shift) {
                    return Err(format!("page_shift={v}: 12, 14 or 16"));
                }
            }
            "tables" => {
                let (lo, hi) = v.split_once('-').ok_or(format!("tables={v} is not LO-HI"))?;
                let (lo, hi) = (number(k, lo)?, number(k, hi)?);
                if lo >= hi {
                    return Err(format!("tables={v} is empty"));
                }
                o.tables.push((lo, hi));
            }
            "links" => o.links_all = v == "all",
            "bracket" => {
                if o.brackets.len() == MAX_BRACKETS {
                    return Err(format!("more than {MAX_BRACKETS} bracket= functions"));
                }
                o.brackets.push(number(k, v)?);
            }
            "stop" => o.stop = Some(number(k, v)?),
            "fixmap" => {
                let (lo, hi) = v.split_once('-').ok_or(format!("fixmap={v} is not LO-HI"))?;
                let (lo, hi) = (number(k, lo)?, number(k, hi)?);
                if lo >= hi {
                    return Err(format!("fixmap={v} is empty"));
                }
                o.fixmap = Some((lo, hi));
            }
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if o.out.as_os_str().is_empty() || o.ram.as_os_str().is_empty() || o.ram_size == 0 {
        return Err("out=, ram= and ram_size= are required".into());
    }
    if o.stop.is_some_and(|s| !o.brackets.contains(&s)) {
        return Err("stop= must name one of the bracket= functions".into());
    }
    Ok(o)
}
