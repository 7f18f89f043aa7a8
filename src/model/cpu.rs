//! What this CPU can run, detected once. Every kernel that chooses a build at run time
//! asks here: the f32 element-wise loops (`kernels.rs`), attention and its softmax
//! (`attention/`) and the int8 products (`int8/`), so that all of them agree on what the
//! machine has.

use std::sync::OnceLock;

/// The instruction-set extensions docclass's kernels use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX2 with fused multiply-add: every SIMD kernel needs it.
    pub avx2_fma: bool,
    /// AVX-512 Foundation (the widest softmax).
    pub avx512f: bool,
    /// AVX-512 byte and word instructions.
    pub avx512bw: bool,
    /// AVX-512 VNNI: `vpdpbusd`, four int8 products per lane and instruction.
    pub avx512_vnni: bool,
    /// AVX-512 BF16: f32 to bf16 conversion in one instruction.
    pub avx512_bf16: bool,
    /// AMX tiles with int8 products (the operating system must also grant their state).
    pub amx_int8: bool,
    /// AMX tiles with bf16 products (attention at int8).
    pub amx_bf16: bool,
}

impl CpuFeatures {
    /// This CPU's features, detected on first use.
    pub fn get() -> &'static CpuFeatures {
        static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
        FEATURES.get_or_init(Self::detect)
    }

    #[cfg(target_arch = "x86_64")]
    fn detect() -> Self {
        use std::is_x86_feature_detected as has;
        CpuFeatures {
            avx2_fma: has!("avx2") && has!("fma"),
            avx512f: has!("avx512f"),
            avx512bw: has!("avx512bw"),
            avx512_vnni: has!("avx512vnni"),
            avx512_bf16: has!("avx512bf16"),
            // `is_x86_feature_detected!("amx-int8")` is not stable yet: CPUID leaf 7,
            // EDX bits 25 (AMX-INT8) and 22 (AMX-BF16), as /proc/cpuinfo reads them.
            amx_int8: std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 25) != 0,
            amx_bf16: std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 22) != 0,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn detect() -> Self {
        CpuFeatures::default()
    }

    /// The names of the features present, for benchmark records (`avx2 fma avx512f …`).
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.avx2_fma, "avx2"),
            (self.avx2_fma, "fma"),
            (self.avx512f, "avx512f"),
            (self.avx512bw, "avx512bw"),
            (self.avx512_vnni, "avx512_vnni"),
            (self.avx512_bf16, "avx512_bf16"),
            (self.amx_int8, "amx_int8"),
            (self.amx_bf16, "amx_bf16"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect()
    }
}
