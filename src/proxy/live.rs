//! The part of the configuration a reload can change while the gateway
//! runs, built into what the proxy reads on each request: the route table,
//! the upstreams, CORS, the identity header names, `server.direct_path`.
//!
//! Every request takes the `Live` in force when it starts and keeps it to
//! its end (`RequestCtx::live`), so a request in flight finishes on the
//! configuration it started with while the next ones get the new one. A
//! reload builds the next `Live` beside the current one and swaps it in
//! (`Lives::swap`): nothing is locked on the request path, one atomic load
//! per request.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::plan::Planner;
use super::IdentityHeaderNames;
use crate::config::Config;
use crate::cors::CorsPolicy;
use crate::metrics::RouteMeter;
use crate::routes::RouteTable;
use crate::state::Gateway;
use crate::tokens::TokenCache;
use crate::upstream::{build_balancer, HealthSender, UpstreamError, UpstreamPool};

/// What the proxy reads of the configuration in force.
pub struct Live {
    /// The whole configuration this was built from.
    pub config: Arc<Config>,
    pub(super) planner: Planner,
    /// By upstream index (`RouteConfig::upstream.index`). A pool a reload
    /// keeps is shared with the previous `Live`.
    pub pools: Vec<Arc<UpstreamPool>>,
    pub(super) identity_headers: IdentityHeaderNames,
    /// Metric handles of each route, by route index.
    pub(super) meters: Vec<RouteMeter>,
}

/// The `Live` in force, shared by every proxy service, the admin listener
/// and housekeeping.
pub type Lives = ArcSwap<Live>;

/// Upstreams of a new `Live` that have no pool yet and run a health check:
/// their first check should complete before the swap.
pub struct Fresh(pub Vec<Arc<UpstreamPool>>);

impl Live {
    /// Builds the proxy's view of `config`. An upstream whose settings are
    /// those of one in `previous` keeps that pool (its targets' health, its
    /// idle connections, its health check); the others get a new one, whose
    /// health check is announced to `health`.
    pub fn build(
        config: Arc<Config>,
        gateway: &Gateway,
        verified: Arc<TokenCache>,
        previous: Option<&Live>,
        health: &HealthSender,
    ) -> Result<(Live, Fresh), UpstreamError> {
        let mut pools = Vec::with_capacity(config.upstreams.len());
        let mut fresh = Vec::new();
        for up in &config.upstreams {
            let kept = previous.and_then(|p| {
                p.config
                    .upstreams
                    .iter()
                    .position(|old| old == up)
                    .and_then(|i| p.pools.get(i))
            });
            if let Some(pool) = kept {
                pools.push(pool.clone());
                continue;
            }
            let balancer = Arc::new(build_balancer(&up.name, up)?);
            let pool = Arc::new(UpstreamPool::new(
                &up.name,
                balancer.clone(),
                up,
                &gateway.metrics,
            ));
            if let Some(hc) = &up.health_check {
                health.watch(&up.name, &balancer, hc.interval);
                fresh.push(pool.clone());
            }
            pools.push(pool);
        }
        let routes = RouteTable::new(&config.routes);
        let meters = (0..)
            .map_while(|i| routes.get(i))
            .map(|route| RouteMeter::new(&gateway.metrics, &route.name))
            .collect();
        let planner = Planner {
            routes,
            cors: CorsPolicy::new(&config.cors),
            tokens: gateway.accounts.tokens.clone(),
            revocations: gateway.accounts.revocations.clone(),
            verified,
            direct_path: config.server.direct_path,
            simplejwt: gateway
                .accounts
                .policy()
                .simplejwt
                .clone()
                .filter(|legacy| legacy.accept_access),
        };
        let live = Live {
            identity_headers: IdentityHeaderNames::new(
                &config.identity_headers,
                config.server.underscore_headers,
            ),
            config,
            planner,
            pools,
            meters,
        };
        Ok((live, Fresh(fresh)))
    }
}
