//! What this CPU can run, detected once. Every kernel that chooses a build at run time
//! asks here: the f32 element-wise loops and softmax (`kernels.rs`) and the int8
//! products (`int8/`), so that all of them agree on what the machine has.

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
    /// AMX tiles with int8 products (the operating system must also grant their state).
    pub amx_int8: bool,
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
            // `is_x86_feature_detected!("amx-int8")` is not stable yet: CPUID leaf 7,
            // EDX bit 25, as the kernel's /proc/cpuinfo reads it.
            amx_int8: std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 25) != 0,
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
            (self.amx_int8, "amx_int8"),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect()
    }
}
