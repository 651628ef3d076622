//! The partner credentials as the headers they travel in, and the key of
//! the pseudonym Encore gets as `chatId`: built once per version of the
//! secrets, so a reload (a rotated key) is used from the next call on, and no
//! call builds a header of its own.

use crate::call::problem::Problem;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use http::{HeaderName, HeaderValue};

use crate::call::route::{PerRoute, Route, Target};

use crate::config::{Live, Secret, Secrets};
use crate::partners::encore::chat_id::PseudonymKey;

pub(super) struct Credentials {
    /// Per route, the header value of each credential by the id a request
    /// names (`""` for a route with one, `partner_id` for Besitos).
    by_route: PerRoute<HashMap<String, HeaderValue>>,
    /// `[encore] chat_id = "pseudonym"`'s key; `None`: the chat id as sent.
    pub chat_id_key: Option<PseudonymKey>,
}

fn header(route: Route, id: &str, secret: &Secret) -> Result<HeaderValue, Problem> {
    let value = crate::partners::credential_value(route, secret.expose());
    let mut v = HeaderValue::from_str(&value).map_err(|_| {
        Problem(format!(
            "{} credential {id:?}: the secret holds characters not allowed in a header",
            route.as_str()
        ))
    })?;
    v.set_sensitive(true);
    Ok(v)
}

impl Credentials {
    fn of(secrets: &Secrets) -> Result<Credentials, Problem> {
        let by_route = PerRoute::try_new(|route| {
            secrets
                .credentials(route)
                .into_iter()
                .map(|(id, secret)| Ok((id.to_string(), header(route, id, secret)?)))
                .collect::<Result<HashMap<_, _>, Problem>>()
        })?;
        Ok(Credentials {
            by_route,
            chat_id_key: secrets.chat_id_key.clone(),
        })
    }

    /// The credential for `target`: its header, and its value (`None`: an
    /// id no credential is configured for).
    pub fn of_target(&self, target: &Target) -> (&'static HeaderName, Option<&HeaderValue>) {
        let route = target.route();
        let id = target.partner_id().unwrap_or("");
        (
            crate::partners::credential_header(route),
            self.by_route.get(route).get(id),
        )
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
