//! RFC 9162 (Certificate Transparency 2.0, §2.1) Merkle tree hashing over
//! the audit log: tree heads, inclusion proofs for one record, consistency
//! proofs between two tree sizes, and their verification. Leaf `i` is
//! record `seq = i + 1`; its leaf data is the record's 32-byte chain hash,
//! which commits to the record's content and everything before it.

use sha2::{Digest, Sha256};

/// A SHA-256 node or leaf hash.
pub type Hash = [u8; 32];

/// `SHA-256("")`: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `HASH(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Sha256::new().chain_update([0u8]).chain_update(data).finalize().into()
}

/// `HASH(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new().chain_update([1u8]).chain_update(left).chain_update(right).finalize().into()
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH over leaf hashes (not leaf data).
pub fn root(leaves: &[Hash]) -> Hash {
    let mut f = Frontier::default();
    for l in leaves {
        f.push(*l);
    }
    f.root()
}

/// The perfect subtrees that make up a tree of any size: enough to extend
/// it leaf by leaf and compute its root, in O(log n) memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Frontier {
    size: u64,
    /// Roots of the perfect subtrees, largest (leftmost) first.
    #[serde(with = "hex_hashes")]
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        // Each trailing one bit of the old size is a perfect subtree of the
        // same height as the new one: merge it.
        let mut s = self.size;
        while s & 1 == 1 {
            let left = self.nodes.pop().expect("one node per set bit");
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// The tree head (MTH) of everything appended so far.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else { return empty_root() };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// Is this a consistent frontier (one node per set bit of the size)?
    pub fn is_valid(&self) -> bool {
        self.nodes.len() == self.size.count_ones() as usize
    }
}

mod hex_hashes {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<String>::deserialize(d)?.iter().map(|h| super::parse_hash(h).ok_or_else(|| D::Error::custom("not a 32-byte hex hash"))).collect()
    }
}

/// A 32-byte hash from 64 lowercase hex characters (the only form Warden
/// writes, so equal hashes are equal strings).
pub fn parse_hash(s: &str) -> Option<Hash> {
    // Nibble value per byte, 0xff for anything but 0-9 and a-f: one table
    // load per character (verification parses two hashes per record).
    const NIBBLE: [u8; 256] = {
        let mut t = [0xffu8; 256];
        let mut c = 0;
        while c < 10 {
            t[b'0' as usize + c] = c as u8;
            c += 1;
        }
        let mut c = 0;
        while c < 6 {
            t[b'a' as usize + c] = 10 + c as u8;
            c += 1;
        }
        t
    };
    let s: &[u8; 64] = s.as_bytes().try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(out)
}

/// Inclusion proof for leaf `index` in the tree of all `leaves`
/// (RFC 9162 §2.1.3.1, PATH). `None` if the index is out of range.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
        let n = d.len();
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(m, &d[..k], out);
            out.push(root(&d[k..]));
        } else {
            path(m - k, &d[k..], out);
            out.push(root(&d[..k]));
        }
    }
    (index < leaves.len()).then(|| {
        let mut out = Vec::new();
        path(index, leaves, &mut out);
        out
    })
}

/// Consistency proof between the first `old_size` leaves and all `leaves`
/// (RFC 9162 §2.1.4.1, PROOF). `None` unless 0 < old_size ≤ len.
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Option<Vec<Hash>> {
    fn subproof(m: usize, d: &[Hash], complete: bool, out: &mut Vec<Hash>) {
        let n = d.len();
        if m == n {
            if !complete {
                out.push(root(d));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            subproof(m, &d[..k], complete, out);
            out.push(root(&d[k..]));
        } else {
            subproof(m - k, &d[k..], false, out);
            out.push(root(&d[..k]));
        }
    }
    (old_size > 0 && old_size <= leaves.len()).then(|| {
        let mut out = Vec::new();
        subproof(old_size, leaves, true, &mut out);
        out
    })
}

/// Verify that `leaf` is leaf `index` of the tree of `size` with `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Verify that the tree of `old_size` with `old_root` is a prefix of the
/// tree of `new_size` with `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old_size: u64, new_size: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The RFC 6962 test vectors used by certificate-transparency-go
    /// (merkle/testonly: LeafInputs, RootHashes, inclusion and consistency
    /// proofs from the C++ reference implementation).
    const LEAVES: [&str; 8] = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    /// (leaf index, tree size, proof)
    const INCLUSION: [(usize, usize, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    /// (old size, new size, proof)
    const CONSISTENCY: [(usize, usize, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (2, 5, &["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e", "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    ];

    fn h(s: &str) -> Hash {
        parse_hash(s).unwrap()
    }

    fn leaves() -> Vec<Hash> {
        LEAVES.iter().map(|l| leaf_hash(&hex::decode(l).unwrap())).collect()
    }

    #[test]
    fn hashes_parse_from_lowercase_hex_only() {
        let h = leaf_hash(b"x");
        assert_eq!(parse_hash(&hex::encode(h)), Some(h));
        assert_eq!(parse_hash(&hex::encode(h).to_uppercase()), None);
        assert_eq!(parse_hash(&hex::encode(h)[1..]), None);
        assert_eq!(parse_hash(&format!("{}g", &hex::encode(h)[1..])), None);
    }

    #[test]
    fn rfc6962_roots() {
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(root(&[]), empty_root());
        let l = leaves();
        for (n, want) in ROOTS.iter().enumerate() {
            assert_eq!(hex::encode(root(&l[..=n])), *want, "root of {} leaves", n + 1);
        }
    }

    #[test]
    fn rfc6962_inclusion_proofs() {
        let l = leaves();
        for (index, size, proof) in INCLUSION {
            let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
            assert_eq!(inclusion_proof(&l[..size], index).unwrap(), want, "inclusion({index}, {size})");
            let r = h(ROOTS[size - 1]);
            assert!(verify_inclusion(index as u64, size as u64, &l[index], &want, &r));
            // Wrong leaf, wrong index, extended proof: refused. (A wrong size
            // can still verify: the signed head binds size and root together.)
            assert!(!verify_inclusion(index as u64, size as u64, &leaf_hash(b"x"), &want, &r));
            assert!(!verify_inclusion(index as u64 + 1, size as u64, &l[index], &want, &r));
            let mut longer = want.clone();
            longer.push(want.first().copied().unwrap_or_default());
            assert!(!verify_inclusion(index as u64, size as u64, &l[index], &longer, &r));
        }
        assert_eq!(inclusion_proof(&l, 8), None);
    }

    #[test]
    fn rfc6962_consistency_proofs() {
        let l = leaves();
        for (m, n, proof) in CONSISTENCY {
            let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
            assert_eq!(consistency_proof(&l[..n], m).unwrap(), want, "consistency({m}, {n})");
            let (r1, r2) = (h(ROOTS[m - 1]), h(ROOTS[n - 1]));
            assert!(verify_consistency(m as u64, n as u64, &r1, &r2, &want));
            if m != n {
                assert!(!verify_consistency(m as u64, n as u64, &r2, &r2, &want), "wrong old root");
                assert!(!verify_consistency(m as u64, n as u64, &r1, &r1, &want), "wrong new root");
                let mut bad = want.clone();
                bad[0][0] ^= 1;
                assert!(!verify_consistency(m as u64, n as u64, &r1, &r2, &bad), "tampered proof");
            }
        }
        assert_eq!(consistency_proof(&l, 0), None);
        assert_eq!(consistency_proof(&l, 9), None);
    }

    proptest! {
        #[test]
        fn every_proof_verifies_and_no_other(n in 1usize..70, i in 0usize..70, m in 1usize..70) {
            let l: Vec<Hash> = (0..n as u32).map(|x| leaf_hash(&x.to_be_bytes())).collect();
            let r = root(&l);
            let i = i % n;
            let p = inclusion_proof(&l, i).unwrap();
            prop_assert!(verify_inclusion(i as u64, n as u64, &l[i], &p, &r));
            prop_assert!(!verify_inclusion(i as u64, n as u64, &l[(i + 1) % n], &p, &r) || n == 1);
            let m = 1 + (m - 1) % n;
            let c = consistency_proof(&l, m).unwrap();
            let old = root(&l[..m]);
            prop_assert!(verify_consistency(m as u64, n as u64, &old, &r, &c));
            if m < n {
                // A different history of the same size is not consistent.
                let mut forked = l.clone();
                forked[m - 1] = leaf_hash(b"forged");
                prop_assert!(!verify_consistency(m as u64, n as u64, &root(&forked[..m]), &r, &c));
            }
            // The frontier survives serialization and keeps growing correctly.
            let mut f = Frontier::default();
            for x in &l[..m] { f.push(*x); }
            let mut f: Frontier = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
            prop_assert!(f.is_valid());
            for x in &l[m..] { f.push(*x); }
            prop_assert_eq!(f.root(), r);
        }
    }
}
