//! One multiplexed connection to one Redis server, made again when it
//! breaks (what redis-rs's `ConnectionManager` does), kept here because
//! that one takes no DNS resolver and `[state.tls] server_name` needs one:
//! the connection goes to the configured address while the certificate is
//! verified against the name.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

/// A connection being made (or made): every call waiting for it shares it.
type Connecting = Shared<BoxFuture<'static, Result<MultiplexedConnection, RedisError>>>;

/// The connection, shared by every call and the health watch.
#[derive(Clone)]
pub(super) struct Reconnecting(Arc<Parts>);

struct Parts {
    client: Client,
    config: AsyncConnectionConfig,
    current: RwLock<Connecting>,
}

/// Tries per reconnection, and the longest wait between two.
const TRIES: u32 = 6;
const MAX_WAIT: Duration = Duration::from_secs(2);

impl Reconnecting {
    /// Connected once (the caller retries a first failure with its own
    /// backoff); from then on, made again whenever it breaks.
    pub(super) async fn connect(
        client: Client,
        config: AsyncConnectionConfig,
    ) -> redis::RedisResult<Reconnecting> {
        let first = connect(client.clone(), config.clone(), 1).boxed().shared();
        first.clone().await?;
        Ok(Reconnecting(Arc::new(Parts {
            client,
            config,
            current: RwLock::new(first),
        })))
    }

    /// The connection now, waiting for one being made; a connection that
    /// could not be made is started again for the next call.
    async fn now(&self) -> Result<(Connecting, MultiplexedConnection), RedisError> {
        let pending = self
            .0
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match pending.clone().await {
            Ok(conn) => Ok((pending, conn)),
            Err(e) => {
                self.again(&pending);
                Err(e)
            }
        }
    }

    /// Makes a new connection in place of `broken`, unless another call
    /// already did; it is made in the background, whoever waits for it.
    fn again(&self, broken: &Connecting) {
        let mut current = self.0.current.write().unwrap_or_else(|p| p.into_inner());
        if current.ptr_eq(broken) {
            let next = connect(self.0.client.clone(), self.0.config.clone(), TRIES)
                .boxed()
                .shared();
            tokio::spawn(next.clone().map(drop));
            *current = next;
        }
    }

    /// `answer`, after starting a new connection when it says this one is
    /// gone.
    fn after<T>(&self, used: &Connecting, answer: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &answer {
            if e.is_connection_dropped() || e.is_io_error() || e.is_unrecoverable_error() {
                self.again(used);
            }
        }
        answer
    }
}

/// A connection, tried up to `tries` times with backoff (50 ms doubling).
async fn connect(
    client: Client,
    config: AsyncConnectionConfig,
    tries: u32,
) -> Result<MultiplexedConnection, RedisError> {
    let mut wait = Duration::from_millis(50);
    let mut tried = 1;
    loop {
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => return Ok(conn),
            Err(e) if tried >= tries => return Err(e),
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_WAIT);
                tried += 1;
            }
        }
    }
}

impl ConnectionLike for Reconnecting {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (used, mut conn) = self.now().await?;
            let answer = conn.req_packed_command(cmd).await;
            self.after(&used, answer)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (used, mut conn) = self.now().await?;
            let answer = conn.req_packed_commands(cmd, offset, count).await;
            self.after(&used, answer)
        })
    }

    fn get_db(&self) -> i64 {
        self.0.client.get_connection_info().redis_settings().db()
    }
}
