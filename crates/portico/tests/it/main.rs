//! Portico's integration tests: each starts the real server on 127.0.0.1:0 with a fresh data dir
//! and talks to it as a client would.

mod accounts;
mod audit;
mod backup;
mod catalogue;
mod cli;
mod documents;
mod email;
mod gateway;
mod helpers;
mod jwks;
mod logs;
mod mqtt;
mod mqtt_attacks;
mod mqtt_client;
mod opensearch;
mod sequence;
mod ship_logs;
mod tls;
mod tokens;
mod traceability;
mod upgrade;
mod warehouse;
