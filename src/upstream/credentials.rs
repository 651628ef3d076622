//! The partner credentials as the headers they travel in: built once per
//! version of the secrets, so a reload (a rotated key) is used from the next
//! call on, and no call builds a header of its own.

use crate::call::problem::Problem;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use http::HeaderValue;

use crate::config::{Live, Secret, Secrets};

pub(super) struct Credentials {
    pub encore_key: HeaderValue,
    /// `Bearer <token>` per partner id.
    pub besitos_auth: HashMap<String, HeaderValue>,
}

fn header(key: &str, secret: &Secret, prefix: &str) -> Result<HeaderValue, Problem> {
    let mut v = HeaderValue::from_str(&format!("{prefix}{}", secret.expose())).map_err(|_| {
        Problem(format!(
            "{key}: the secret holds characters not allowed in a header"
        ))
    })?;
    v.set_sensitive(true);
    Ok(v)
}

impl Credentials {
    fn of(secrets: &Secrets) -> Result<Credentials, Problem> {
        let mut besitos_auth = HashMap::new();
        for (id, token) in &secrets.partners {
            let key = format!("besitos partner {id} token");
            besitos_auth.insert(id.clone(), header(&key, token, "Bearer ")?);
        }
        Ok(Credentials {
            encore_key: header("encore.api_key", &secrets.encore_key, "")?,
            besitos_auth,
        })
    }
}

/// The live secrets and the headers built from the version last seen.
pub(super) struct LiveCredentials {
    secrets: Arc<Live<Secrets>>,
    built: RwLock<(Arc<Secrets>, Arc<Credentials>)>,
}

impl LiveCredentials {
    pub fn new(secrets: Arc<Live<Secrets>>) -> Result<LiveCredentials, Problem> {
        let now = secrets.get();
        let built = Arc::new(Credentials::of(&now)?);
        Ok(LiveCredentials {
            secrets,
            built: RwLock::new((now, built)),
        })
    }

    /// The headers for the current secrets.
    pub fn current(&self) -> Arc<Credentials> {
        let now = self.secrets.get();
        {
            let built = self.built.read().unwrap_or_else(|p| p.into_inner());
            if Arc::ptr_eq(&built.0, &now) {
                return built.1.clone();
            }
        }
        match Credentials::of(&now) {
            Ok(c) => {
                let c = Arc::new(c);
                *self.built.write().unwrap_or_else(|p| p.into_inner()) = (now, c.clone());
                c
            }
            // Config validation refuses such secrets; should one slip through,
            // the previous credentials go on serving.
            Err(e) => {
                tracing::error!(error = %e, "the reloaded secrets cannot be sent; keeping the previous ones");
                self.built
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .1
                    .clone()
            }
        }
    }
}
