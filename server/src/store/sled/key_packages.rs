//! A device's KeyPackages in the sled backend: a FIFO of single-use ones
//! (`kp`, indexed by `kp_meta`'s next-to-claim and next-to-fill counters)
//! and one last-resort KeyPackage (`kp_last`). The [`Store`](crate::store::Store)
//! methods of the same names call these.

use ::sled::{IVec, Transactional};
use cascade_protocol::limits::MAX_KEY_PACKAGE_STOCK;
use cascade_protocol::DeviceId;

use super::{abort, device_index_key, SledStore, TxResult};
use crate::store::{ClaimedKeyPackage, KeyPackageStock, StoreError};

/// KeyPackage indices of a device: the next to claim and the next to fill.
pub(super) fn kp_meta(value: Option<IVec>) -> TxResult<(u64, u64)> {
    match value {
        None => Ok((0, 0)),
        Some(v) if v.len() == 16 => {
            let head = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
            let tail = u64::from_be_bytes(v[8..].try_into().expect("8 bytes"));
            Ok((head, tail))
        }
        Some(_) => abort(StoreError::Corrupt("KeyPackage counters".into())),
    }
}

pub(super) fn kp_meta_bytes(head: u64, tail: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&head.to_be_bytes());
    out[8..].copy_from_slice(&tail.to_be_bytes());
    out
}

fn stock_of(head: u64, tail: u64) -> u32 {
    u32::try_from(tail.saturating_sub(head)).unwrap_or(u32::MAX)
}

impl SledStore {
    pub(super) fn kp_put(
        &self,
        device_id: &DeviceId,
        key_packages: &[&[u8]],
        last_resort: Option<&[u8]>,
    ) -> Result<u32, StoreError> {
        let stock = (&self.kp, &self.kp_meta, &self.kp_last).transaction(|(kp, meta, last)| {
            let (head, mut tail) = kp_meta(meta.get(device_id.as_bytes())?)?;
            let new_stock = u64::from(stock_of(head, tail)) + key_packages.len() as u64;
            if new_stock > u64::from(MAX_KEY_PACKAGE_STOCK) {
                return abort(StoreError::StockFull);
            }
            for package in key_packages {
                kp.insert(&device_index_key(device_id, tail)[..], *package)?;
                tail += 1;
            }
            meta.insert(&device_id.as_bytes()[..], &kp_meta_bytes(head, tail)[..])?;
            if let Some(package) = last_resort {
                last.insert(&device_id.as_bytes()[..], package)?;
            }
            Ok(stock_of(head, tail))
        })?;
        Ok(stock)
    }

    pub(super) fn kp_withdraw(&self, device_id: &DeviceId) -> Result<(), StoreError> {
        (&self.kp, &self.kp_meta, &self.kp_last).transaction(|(kp, meta, last)| {
            let (head, tail) = kp_meta(meta.get(device_id.as_bytes())?)?;
            for i in head..tail {
                kp.remove(&device_index_key(device_id, i)[..])?;
            }
            meta.insert(&device_id.as_bytes()[..], &kp_meta_bytes(tail, tail)[..])?;
            last.remove(&device_id.as_bytes()[..])?;
            Ok(())
        })?;
        Ok(())
    }

    pub(super) fn kp_stock(&self, device_id: &DeviceId) -> Result<KeyPackageStock, StoreError> {
        let (head, tail) = kp_meta(self.kp_meta.get(device_id.as_bytes())?)
            .map_err(|_| StoreError::Corrupt("KeyPackage counters".into()))?;
        Ok(KeyPackageStock {
            stock: stock_of(head, tail),
            has_last_resort: self.kp_last.contains_key(device_id.as_bytes())?,
        })
    }

    pub(super) fn kp_claim(
        &self,
        device_id: &DeviceId,
    ) -> Result<Option<ClaimedKeyPackage>, StoreError> {
        let claimed =
            (&self.kp, &self.kp_meta, &self.kp_last).transaction(|(kp, meta, last)| {
                let (head, tail) = kp_meta(meta.get(device_id.as_bytes())?)?;
                if head < tail {
                    let key = device_index_key(device_id, head);
                    let Some(package) = kp.remove(&key[..])? else {
                        return abort(StoreError::Corrupt("missing KeyPackage".into()));
                    };
                    meta.insert(
                        &device_id.as_bytes()[..],
                        &kp_meta_bytes(head + 1, tail)[..],
                    )?;
                    return Ok(Some(ClaimedKeyPackage {
                        key_package: package.to_vec(),
                        last_resort: false,
                        stock: stock_of(head + 1, tail),
                    }));
                }
                Ok(last
                    .get(device_id.as_bytes())?
                    .map(|package| ClaimedKeyPackage {
                        key_package: package.to_vec(),
                        last_resort: true,
                        stock: 0,
                    }))
            })?;
        Ok(claimed)
    }
}
