//! The AMX tile unit, shared by the int8 products (`int8/amx.rs`) and bf16 attention
//! (`attention/amx_bf16.rs`): Linux's permission for the tile state, asked once, and one
//! tile configuration that serves both (every tile register 16 rows × 64 bytes: 64 int8
//! or 32 bf16 inputs deep, or 16 f32 / i32 sums wide).
//!
//! Rust has no stable AMX intrinsics; the instructions are written with `asm!`.

use std::arch::asm;
use std::sync::OnceLock;

/// Rows of every tile register.
pub const TILE_ROWS: usize = 16;
/// Bytes per row of every tile register.
pub const TILE_BYTES: usize = 64;

/// The tile configuration `ldtilecfg` reads (palette 1): bytes per row and rows of each
/// tile register.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    /// tmm0 … tmm7, each 16 rows × 64 bytes.
    fn uniform() -> Self {
        let mut config =
            TileConfig { palette: 1, start_row: 0, reserved: [0; 14], bytes_per_row: [0; 16], rows: [0; 16] };
        for t in 0..8 {
            config.bytes_per_row[t] = TILE_BYTES as u16;
            config.rows[t] = TILE_ROWS as u8;
        }
        config
    }
}

/// Whether Linux granted this process the tile data state (asked on first use; false
/// off Linux, where docclass does not ask).
pub fn tile_state_granted() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(request_tile_state)
}

fn request_tile_state() -> bool {
    #[cfg(target_os = "linux")]
    {
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        const SYS_ARCH_PRCTL: i64 = 158;
        let result: i64;
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) only changes which
        // register state the kernel saves for this process; it reads and writes no memory.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => result,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        result == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Runs `work` with the tiles configured as this module says, and releases them after,
/// so that a context switch saves no tile data.
///
/// # Safety
/// The CPU must have AMX and [`tile_state_granted`] must have returned true.
pub unsafe fn with_tiles<R>(work: impl FnOnce() -> R) -> R {
    let config = TileConfig::uniform();
    // SAFETY: the caller checked AMX and the tile state; the configuration is valid for
    // palette 1.
    unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
    let result = work();
    // SAFETY: as above.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
    result
}
