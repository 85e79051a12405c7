//! The AWS IoT rule action: IoT Core evaluates the rule's SQL and invokes this Lambda with what the
//! rule selected; the function it runs is named by `PORTICO_RULE_FUNCTION` (the same names a local
//! rules file uses).

use portico_functions::{Context, RULE_FUNCTIONS, run_rule_function};
use serde_json::Value;

pub async fn handle(ctx: &Context, function: &str, payload: Value) -> Result<(), String> {
    if !RULE_FUNCTIONS.contains(&function) {
        return Err(format!(
            "PORTICO_RULE_FUNCTION={function:?} is not a rule function ({})",
            RULE_FUNCTIONS.join(", ")
        ));
    }
    // An error makes Lambda retry the asynchronous invocation; the functions are idempotent.
    let serial = payload.get("serial").and_then(Value::as_str).map(str::to_string);
    let acting = portico_functions::rule_acting(function, serial.as_deref(), None);
    portico_core::audit::scope(acting, run_rule_function(ctx, function, payload))
        .await
        .map_err(|e| e.to_string())
}
