//! The daemon killed (SIGKILL) at random moments while a client drives sectors: after each
//! restart every acknowledged number, state report and reservation is there, and no number is
//! handed out twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};

use crate::common::{raw_call, TestManager, MINER};

#[derive(Default)]
struct Acked {
    /// (number, last state reported, reserved)
    sectors: Vec<(u64, Option<String>, bool)>,
}

fn drive(url: String, token: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<Acked>>) {
    let mut step = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let call = |method: &str, params: Value| -> Option<Value> {
            let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
            let resp = reqwest::blocking::Client::new()
                .post(&url)
                .timeout(Duration::from_secs(5))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .ok()?;
            let v: Value = resp.json().ok()?;
            v.get("error").is_none().then(|| v["result"].clone())
        };
        let Some(sector) = call(
            "Venus.AllocateSector",
            json!([{"AllowedMiners": null, "AllowedProofTypes": null}]),
        ) else {
            continue;
        };
        let n = sector["ID"]["Number"].as_u64().expect("number");
        let idx = {
            let mut a = acked.lock().expect("lock");
            a.sectors.push((n, None, false));
            a.sectors.len() - 1
        };
        let sid = json!({"Miner": MINER, "Number": n});
        for state in ["Allocated", "PiecesAdded", "TicketAssigned"] {
            step += 1;
            let report = json!({"Worker": {"Instance": "w", "Location": "l"}, "StateChange": {"Prev": "", "Next": state, "Event": step.to_string()}, "Failure": null});
            if call("Venus.ReportState", json!([sid, report])).is_none() {
                return;
            }
            acked.lock().expect("lock").sectors[idx].1 = Some(state.to_string());
        }
        if n % 2 == 0 {
            match call("Venus.StoreReserveSpace", json!([sid, 4096, ["persist"]])) {
                None => return,
                Some(store) => assert_eq!(store["Name"], json!("persist"), "sector {n}: {store}"),
            }
            acked.lock().expect("lock").sectors[idx].2 = true;
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_number_state_or_reservation() {
    let mut m = TestManager::new();
    m.start();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut rng = rand::thread_rng();
    for round in 0..6 {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (url, stop, acked) = (m.url(), stop.clone(), acked.clone());
                let token = m.token(damocles_auth::Perm::Write);
                std::thread::spawn(move || drive(url, token, stop, acked))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
        m.kill();
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().expect("client thread");
        }
        m.start();
        let acked = acked.lock().expect("lock");
        assert!(
            !acked.sectors.is_empty(),
            "round {round}: the clients made progress"
        );
        let mut numbers: Vec<u64> = acked.sectors.iter().map(|s| s.0).collect();
        numbers.sort_unstable();
        let len = numbers.len();
        numbers.dedup();
        assert_eq!(
            numbers.len(),
            len,
            "round {round}: a number was handed out twice"
        );
        let stores = m.raw("Venus.StoreList", json!([]));
        let reserved_by: Vec<String> = stores["result"][0]["ReservedBy"]
            .as_array()
            .expect("reservations")
            .iter()
            .map(|r| r["By"].as_str().expect("by").to_string())
            .collect();
        for (n, state, reserved) in &acked.sectors {
            let sid = json!({"Miner": MINER, "Number": n});
            let found = m.raw("Venus.FindSector", json!(["online", sid]));
            assert!(
                found.get("error").is_none(),
                "round {round}: sector {n} lost: {found}\n{}",
                m.logs()
            );
            if let Some(state) = state {
                let latest = &found["result"]["LatestState"]["StateChange"]["Next"];
                // A report that was in flight at the kill may also have landed: the state is
                // the acknowledged one or a later one, never an earlier one.
                let order = ["Allocated", "PiecesAdded", "TicketAssigned"];
                let pos = |s: &str| order.iter().position(|x| *x == s);
                let got = latest.as_str().and_then(pos);
                assert!(
                    got >= pos(state),
                    "round {round}: sector {n} reported {state}, stored {latest}"
                );
            }
            if *reserved {
                assert!(
                    reserved_by.contains(&format!("s-t0{MINER}-{n}")),
                    "round {round}: reservation of {n} lost: {reserved_by:?}\n{}",
                    m.logs()
                );
            }
        }
        let max = *numbers.last().expect("max");
        let next = m.raw(
            "Venus.AllocateSector",
            json!([{"AllowedMiners": null, "AllowedProofTypes": null}]),
        );
        let next = next["result"]["ID"]["Number"]
            .as_u64()
            .expect("next number");
        assert!(
            next > max,
            "round {round}: {next} after {max}: numbers go on after a restart"
        );
        drop(acked);
        let _ = raw_call(&m.url(), Some(&m.admin_token()), "Venus.Version", json!([]));
    }
}
