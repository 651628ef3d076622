//! The partner routes offergate forwards ([`Route`], also the bounded
//! `route` metric label) and what a request's target names of one
//! ([`Target`]). Which target a request line is for is the router's
//! (`edge/router.rs`); what each partner is, `partners/`.

/// The partner routes offergate forwards. Also the bounded `route` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    EncoreOffers,
    BesitosGoals,
}

impl Route {
    pub const ALL: [Route; 2] = [Route::EncoreOffers, Route::BesitosGoals];

    pub const fn as_str(self) -> &'static str {
        match self {
            Route::EncoreOffers => "encore_offers",
            Route::BesitosGoals => "besitos_goals",
        }
    }

    /// Position in per-route arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its partner's name: the config section (`[encore]`, `[besitos]`).
    pub fn partner(self) -> &'static str {
        match self {
            Route::EncoreOffers => "encore",
            Route::BesitosGoals => "besitos",
        }
    }

    pub fn parse(s: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The route labels the layers count a partner call under: each partner
/// route's own, and the conversation endpoint's for the Encore calls it makes
/// ([`ProxyRequest::counted_as`](crate::call::request::ProxyRequest::counted_as)).
pub const COUNTED_AS: [&str; 3] = [
    Route::EncoreOffers.as_str(),
    Route::BesitosGoals.as_str(),
    OwnRoute::EncoreMessages.as_str(),
];

/// offergate's own routes on the proxy listener: answered by offergate
/// (the conversation endpoint calls Encore through the stack when a message
/// is eligible). Each is a `route` label of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OwnRoute {
    EncoreEligibility,
    EncoreMessages,
    EncoreUnsent,
    EncoreOptOut,
    EncoreOptIn,
}

impl OwnRoute {
    pub const ALL: [OwnRoute; 5] = [
        OwnRoute::EncoreEligibility,
        OwnRoute::EncoreMessages,
        OwnRoute::EncoreUnsent,
        OwnRoute::EncoreOptOut,
        OwnRoute::EncoreOptIn,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            OwnRoute::EncoreEligibility => "encore_eligibility",
            OwnRoute::EncoreMessages => "encore_messages",
            OwnRoute::EncoreUnsent => "encore_unsent",
            OwnRoute::EncoreOptOut => "encore_opt_out",
            OwnRoute::EncoreOptIn => "encore_opt_in",
        }
    }

    /// The path it is served on.
    pub fn path(self) -> &'static str {
        match self {
            OwnRoute::EncoreEligibility => "/offergate/v1/encore/eligibility",
            OwnRoute::EncoreMessages => "/offergate/v1/encore/messages",
            OwnRoute::EncoreUnsent => "/offergate/v1/encore/offers/unsent",
            OwnRoute::EncoreOptOut => "/offergate/v1/encore/opt-out",
            OwnRoute::EncoreOptIn => "/offergate/v1/encore/opt-in",
        }
    }
}

/// Any route the proxy listener serves: the `route` label of the request
/// metrics and the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnyRoute {
    Partner(Route),
    Own(OwnRoute),
}

impl AnyRoute {
    /// Every route, in [`AnyRoute::index`] order.
    pub const ALL: [AnyRoute; 7] = [
        AnyRoute::Partner(Route::EncoreOffers),
        AnyRoute::Partner(Route::BesitosGoals),
        AnyRoute::Own(OwnRoute::EncoreEligibility),
        AnyRoute::Own(OwnRoute::EncoreMessages),
        AnyRoute::Own(OwnRoute::EncoreUnsent),
        AnyRoute::Own(OwnRoute::EncoreOptOut),
        AnyRoute::Own(OwnRoute::EncoreOptIn),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnyRoute::Partner(r) => r.as_str(),
            AnyRoute::Own(r) => r.as_str(),
        }
    }

    /// Position in per-label arrays.
    pub fn index(self) -> usize {
        match self {
            AnyRoute::Partner(r) => r.index(),
            AnyRoute::Own(r) => Route::ALL.len() + r as usize,
        }
    }
}

/// One value per route, indexed by [`Route`]: per-route config and state
/// without a map lookup on the hot path.
#[derive(Clone, Debug, Default)]
pub struct PerRoute<T>(pub [T; 2]);

impl<T> PerRoute<T> {
    pub fn new(mut make: impl FnMut(Route) -> T) -> PerRoute<T> {
        PerRoute(Route::ALL.map(&mut make))
    }

    /// [`PerRoute::new`] from a `make` that may fail: the first failure.
    pub fn try_new<E>(mut make: impl FnMut(Route) -> Result<T, E>) -> Result<PerRoute<T>, E> {
        let [first, second] = Route::ALL.map(&mut make);
        Ok(PerRoute([first?, second?]))
    }

    pub fn get(&self, route: Route) -> &T {
        &self.0[route.index()]
    }
}

/// A request target that passed the router: which partner, and what its
/// path and query named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Encore's one offers endpoint.
    Encore,
    /// One Besitos partner's upcoming goals, at a page.
    Besitos {
        partner_id: String,
        /// The `page` query parameter, the only one accepted.
        page: Option<u32>,
    },
}

impl Target {
    pub fn route(&self) -> Route {
        match self {
            Target::Encore => Route::EncoreOffers,
            Target::Besitos { .. } => Route::BesitosGoals,
        }
    }

    /// The Besitos partner id; `None` for Encore.
    pub fn partner_id(&self) -> Option<&str> {
        match self {
            Target::Encore => None,
            Target::Besitos { partner_id, .. } => Some(partner_id),
        }
    }

    /// The page asked for; `None` where the route has none or none was asked.
    pub fn page(&self) -> Option<u32> {
        match self {
            Target::Encore => None,
            Target::Besitos { page, .. } => *page,
        }
    }
}
