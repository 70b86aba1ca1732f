//! The conformance suite on a real RabbitMQ (`AMQP_URL`, default the local broker). These
//! tests fail, never skip, when no broker answers: `./scripts/test` starts one.

mod common;
mod conformance;

all_conformance_cases!(common::Env::rabbitmq());
