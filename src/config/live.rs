//! Settings that change while offergate runs: the secrets, re-read on a
//! reload (SIGHUP). Whoever uses one reads it per call, so a rotated key is
//! used from the next call on, while calls in flight keep the value they
//! started with.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::{Config, Secret};

/// A value that a reload may replace.
pub struct Live<T> {
    value: RwLock<Arc<T>>,
}

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live {
            value: RwLock::new(Arc::new(value)),
        }
    }

    /// The current value (one reference count).
    pub fn get(&self) -> Arc<T> {
        self.value.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, value: T) {
        *self.value.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

/// Every secret of a config, and the Besitos partners they belong to.
#[derive(Clone, Debug)]
pub struct Secrets {
    pub encore_key: Secret,
    /// Bearer token per `partner_id`.
    pub partners: BTreeMap<String, Secret>,
    pub inbound_token: Option<Secret>,
    /// What lets another host change the admin listener's state.
    pub admin_token: Option<Secret>,
    /// The key of the pseudonym Encore gets as `chatId`; `None`: as sent.
    pub chat_id_key: Option<crate::partners::encore::chat_id::PseudonymKey>,
}

impl Secrets {
    /// `route`'s credentials, by the id a request names: Encore's one key
    /// (id ""), each Besitos partner's token.
    pub fn credentials(&self, route: crate::call::route::Route) -> Vec<(&str, &Secret)> {
        match route {
            crate::call::route::Route::EncoreOffers => vec![("", &self.encore_key)],
            crate::call::route::Route::BesitosGoals => self
                .partners
                .iter()
                .map(|(id, t)| (id.as_str(), t))
                .collect(),
        }
    }

    pub fn of(config: &Config) -> Secrets {
        Secrets {
            encore_key: config.encore.api_key.clone(),
            partners: config.besitos.partners.clone(),
            inbound_token: config.server.inbound_token.clone(),
            admin_token: config.server.admin_token.clone(),
            chat_id_key: config.encore.chat_id_key.as_ref().map(|k| {
                crate::partners::encore::chat_id::PseudonymKey::new(k.expose().as_bytes())
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_keeps_what_it_read_and_the_next_one_sees_the_new_value() {
        let live = Live::new(1);
        let held = live.get();
        live.set(2);
        assert_eq!((*held, *live.get()), (1, 2));
    }
}
