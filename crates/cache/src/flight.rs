//! Single flight: identical requests that arrive while the first is being generated
//! attach to its generation instead of running the model again. A flight is a growing
//! log of items; every listener (the first client too) reads it from the start at its
//! own pace, so a streaming follower gets tokens as they are produced and a late one
//! catches up from the beginning. The producer runs on its own task: when the client
//! that started it disconnects, it goes on while anyone still listens, and learns from
//! [`Producer::abandoned`] when nobody does.

use crate::Key;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{watch, Notify};

struct State<T> {
    items: Vec<T>,
    closed: bool,
    listeners: usize,
}

struct Flight<T> {
    state: Mutex<State<T>>,
    /// Bumped on every push and on close; readers wait on it.
    version: watch::Sender<u64>,
    /// Signalled when the last listener leaves.
    deserted: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Flight<T> {
    fn new(items: Vec<T>, closed: bool, listeners: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                items,
                closed,
                listeners,
            }),
            version: watch::channel(0).0,
            deserted: Notify::new(),
        })
    }
}

/// One listener's cursor into a flight.
pub struct Reader<T> {
    flight: Arc<Flight<T>>,
    pos: usize,
    seen: watch::Receiver<u64>,
}

impl<T: Clone> Reader<T> {
    fn new(flight: Arc<Flight<T>>) -> Self {
        let seen = flight.version.subscribe();
        Self {
            flight,
            pos: 0,
            seen,
        }
    }

    /// A finished log to replay (a cache hit).
    pub fn replay(items: Vec<T>) -> Self {
        Self::new(Flight::new(items, true, 1))
    }

    /// Whether the log is complete (nothing more will be written to it).
    pub fn is_closed(&self) -> bool {
        lock(&self.flight.state).closed
    }

    /// The next item; `None` once the log is closed and read to its end.
    pub async fn next(&mut self) -> Option<T> {
        loop {
            {
                let st = lock(&self.flight.state);
                if let Some(it) = st.items.get(self.pos) {
                    self.pos += 1;
                    return Some(it.clone());
                }
                if st.closed {
                    return None;
                }
                self.seen.mark_unchanged();
            }
            // A push after the check above bumps the version, so this cannot miss it.
            if self.seen.changed().await.is_err() {
                return None;
            }
        }
    }
}

impl<T> Drop for Reader<T> {
    fn drop(&mut self) {
        let mut st = lock(&self.flight.state);
        st.listeners -= 1;
        if st.listeners == 0 && !st.closed {
            self.flight.deserted.notify_one();
        }
    }
}

/// The one writer of a flight. Dropping it closes the flight (and takes it out of the
/// registry, so later requests start afresh or find the stored entry).
pub struct Producer<T> {
    flight: Arc<Flight<T>>,
    registered: Option<(Arc<Flights<T>>, Key)>,
}

impl<T: Clone> Producer<T> {
    pub fn push(&self, item: T) {
        lock(&self.flight.state).items.push(item);
        self.flight.version.send_modify(|v| *v += 1);
    }

    /// Resolves once no listener is left; the producer should stop (and, to be sure no
    /// one joined meanwhile, call [`Producer::give_up`]).
    pub async fn abandoned(&self) {
        loop {
            let n = self.flight.deserted.notified();
            if lock(&self.flight.state).listeners == 0 {
                return;
            }
            n.await;
        }
    }

    /// Closes the flight if it still has no listener; false if someone joined since.
    pub fn give_up(&self) -> bool {
        let _map = self.registered.as_ref().map(|(r, _)| lock(&r.map));
        let mut st = lock(&self.flight.state);
        if st.listeners > 0 {
            return false;
        }
        st.closed = true;
        true
    }

    pub fn listeners(&self) -> usize {
        lock(&self.flight.state).listeners
    }

    /// A new listener, for a flight that is not in any registry.
    pub fn reader(&self) -> Reader<T> {
        lock(&self.flight.state).listeners += 1;
        Reader::new(self.flight.clone())
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        if let Some((reg, key)) = self.registered.take() {
            let mut map = lock(&reg.map);
            if map.get(&key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
                map.remove(&key);
            }
        }
        lock(&self.flight.state).closed = true;
        self.flight.version.send_modify(|v| *v += 1);
    }
}

/// How a request met the registry.
pub enum Joined<T> {
    /// No identical generation was running: this request produces it.
    Leader(Producer<T>, Reader<T>),
    /// One was: read its log.
    Follower(Reader<T>),
}

/// The generations in flight, by key.
pub struct Flights<T> {
    map: Mutex<HashMap<Key, Arc<Flight<T>>>>,
}

impl<T: Clone> Default for Flights<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> Flights<T> {
    pub fn join_or_lead(self: &Arc<Self>, key: Key) -> Joined<T> {
        let mut map = lock(&self.map);
        if let Some(f) = map.get(&key) {
            let mut st = lock(&f.state);
            if !st.closed {
                st.listeners += 1;
                drop(st);
                return Joined::Follower(Reader::new(f.clone()));
            }
        }
        let f = Flight::new(Vec::new(), false, 1);
        map.insert(key, f.clone());
        Joined::Leader(
            Producer {
                flight: f.clone(),
                registered: Some((self.clone(), key)),
            },
            Reader::new(f),
        )
    }

    /// A flight no one else can join (a request that must run afresh).
    pub fn private() -> (Producer<T>, Reader<T>) {
        let f = Flight::new(Vec::new(), false, 1);
        (
            Producer {
                flight: f.clone(),
                registered: None,
            },
            Reader::new(f),
        )
    }

    pub fn in_flight(&self) -> usize {
        lock(&self.map).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn followers_see_every_item_including_those_before_they_joined() {
        let reg = Arc::new(Flights::<u32>::default());
        let Joined::Leader(p, mut r0) = reg.join_or_lead(Key([1; 32])) else {
            panic!("first is the leader")
        };
        p.push(1);
        let Joined::Follower(mut r1) = reg.join_or_lead(Key([1; 32])) else {
            panic!("second follows")
        };
        let late = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(x) = r1.next().await {
                got.push(x);
            }
            got
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.push(2);
        drop(p);
        assert_eq!(late.await.unwrap(), vec![1, 2]);
        assert_eq!(r0.next().await, Some(1));
        assert_eq!(r0.next().await, Some(2));
        assert_eq!(r0.next().await, None);
        // Closed flights leave the registry: the next identical request leads anew.
        assert_eq!(reg.in_flight(), 0);
        assert!(matches!(reg.join_or_lead(Key([1; 32])), Joined::Leader(..)));
    }

    #[tokio::test]
    async fn the_producer_learns_when_the_last_listener_leaves() {
        let reg = Arc::new(Flights::<u32>::default());
        let Joined::Leader(p, r0) = reg.join_or_lead(Key([2; 32])) else {
            panic!()
        };
        let Joined::Follower(r1) = reg.join_or_lead(Key([2; 32])) else {
            panic!()
        };
        drop(r0);
        let waited = tokio::time::timeout(Duration::from_millis(50), p.abandoned()).await;
        assert!(waited.is_err(), "one listener is left");
        drop(r1);
        tokio::time::timeout(Duration::from_secs(1), p.abandoned())
            .await
            .expect("abandoned once nobody listens");
        assert!(p.give_up());
    }

    #[tokio::test]
    async fn a_listener_joining_before_give_up_keeps_the_flight_alive() {
        let reg = Arc::new(Flights::<u32>::default());
        let Joined::Leader(p, r0) = reg.join_or_lead(Key([3; 32])) else {
            panic!()
        };
        drop(r0);
        p.abandoned().await;
        let Joined::Follower(_r1) = reg.join_or_lead(Key([3; 32])) else {
            panic!("still running")
        };
        assert!(!p.give_up());
    }
}
