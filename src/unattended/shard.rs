//! `--shard K/N`: which documents this process classifies when N processes share an
//! archive. A document belongs to shard `hash(id) mod N`, so the split needs no
//! coordination and is the same on every machine and every run.

use anyhow::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = anyhow::Error;

    /// `K/N` with K from 0 to N−1 (as Kubernetes numbers job indexes).
    fn from_str(s: &str) -> Result<Self> {
        let Some((k, n)) = s.split_once('/') else { bail!("--shard takes K/N, such as 0/4; got {s:?}") };
        let (Ok(index), Ok(count)) = (k.trim().parse::<u64>(), n.trim().parse::<u64>()) else {
            bail!("--shard takes K/N with whole numbers, such as 0/4; got {s:?}")
        };
        if count == 0 || index >= count {
            bail!("--shard {s}: K must lie between 0 and N−1 = {}", count.saturating_sub(1));
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    pub fn contains(&self, id: &str) -> bool {
        fnv1a(id.as_bytes()) % self.count == self.index
    }
}

/// 64-bit FNV-1a: fixed by its definition, unlike the standard library's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_is_in_exactly_one_shard_and_shards_are_even() {
        let shards: Vec<Shard> = (0..4).map(|k| format!("{k}/4").parse().unwrap()).collect();
        let mut sizes = [0usize; 4];
        for i in 0..4000 {
            let id = format!("archive/2026/brief-{i}.txt");
            let owners: Vec<usize> = (0..4).filter(|&k| shards[k].contains(&id)).collect();
            assert_eq!(owners.len(), 1);
            sizes[owners[0]] += 1;
        }
        assert!(sizes.iter().all(|&n| (850..1150).contains(&n)), "{sizes:?}");
        assert!("4/4".parse::<Shard>().is_err() && "1-4".parse::<Shard>().is_err() && "0/0".parse::<Shard>().is_err());
    }
}
