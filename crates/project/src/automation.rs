//! Automations declared in `function.jsonc` (`automations[]`): the five kinds, their validation,
//! and their wire JSON.
//!
//! An [`Automation`] can only be built through validation ([`Automation::from_value`],
//! [`parse_automations`] or `Deserialize`, which validates too). It serializes back to the wire
//! JSON with defaults filled in (`is_active`, `ends_type`).
//!
//! Beyond the schema, two rules enforce the documented minimum interval of
//! [`MIN_INTERVAL_MINUTES`]: a simple schedule in minutes needs `repeat_interval >= 5`, and a cron
//! expression whose minute field (given its hour field) can fire twice within 5 minutes is
//! rejected. The cron parser ([`CronExpr`]) and the ISO date-time parser ([`IsoDateTime`]) are
//! public so that the scheduler can use the very same rules.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The smallest allowed interval between two runs of a schedule.
pub const MIN_INTERVAL_MINUTES: u32 = 5;

/// Fields every automation has.
#[derive(Debug, Clone, PartialEq)]
pub struct AutomationCommon {
    /// Unique within its function; trimmed, non-empty.
    pub name: String,
    pub description: Option<String>,
    /// Arguments passed to the function when the automation fires.
    pub function_args: Option<Map<String, Value>>,
    /// Defaults to `true`.
    pub is_active: bool,
}

/// One automation: the five kinds of the Base44 schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Automation {
    /// `type: "scheduled"`, `schedule_mode: "one-time"`.
    OneTime {
        common: AutomationCommon,
        /// A valid ISO 8601 date-time, as written.
        one_time_date: String,
    },
    /// `type: "scheduled"`, `schedule_mode: "recurring"`, `schedule_type: "cron"`.
    Cron {
        common: AutomationCommon,
        /// Five fields, as written (validated by [`CronExpr::parse`]).
        cron_expression: String,
        ends: Ends,
    },
    /// `type: "scheduled"`, `schedule_mode: "recurring"`, `schedule_type: "simple"`.
    Simple {
        common: AutomationCommon,
        repeat_unit: RepeatUnit,
        /// Positive; absent means 1.
        repeat_interval: Option<u32>,
        /// `HH:MM` (or `HH:MM:SS`).
        start_time: Option<String>,
        /// 0-6, 0 = Sunday.
        repeat_on_days: Option<Vec<u8>>,
        /// 1-31.
        repeat_on_day_of_month: Option<u8>,
        ends: Ends,
    },
    /// `type: "entity"`: runs on entity events.
    Entity {
        common: AutomationCommon,
        entity_name: String,
        /// Non-empty, no repeats.
        event_types: Vec<EntityEvent>,
    },
    /// `type: "connector"`: runs on events of an external integration.
    Connector {
        common: AutomationCommon,
        integration_type: String,
        /// Empty means every event.
        events: Vec<String>,
        resource_id: Option<String>,
        trigger_conditions: Option<TriggerConditions>,
    },
}

/// Unit of a simple schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatUnit {
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
}

impl RepeatUnit {
    const ALL: [&'static str; 5] = ["minutes", "hours", "days", "weeks", "months"];

    pub fn as_str(self) -> &'static str {
        match self {
            RepeatUnit::Minutes => "minutes",
            RepeatUnit::Hours => "hours",
            RepeatUnit::Days => "days",
            RepeatUnit::Weeks => "weeks",
            RepeatUnit::Months => "months",
        }
    }

    fn from_str(s: &str) -> Option<Self> {
        Some(match s {
            "minutes" => RepeatUnit::Minutes,
            "hours" => RepeatUnit::Hours,
            "days" => RepeatUnit::Days,
            "weeks" => RepeatUnit::Weeks,
            "months" => RepeatUnit::Months,
            _ => return None,
        })
    }
}

/// An entity event an entity automation listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityEvent {
    Create,
    Update,
    Delete,
}

impl EntityEvent {
    const ALL: [&'static str; 3] = ["create", "update", "delete"];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityEvent::Create => "create",
            EntityEvent::Update => "update",
            EntityEvent::Delete => "delete",
        }
    }

    fn from_str(s: &str) -> Option<Self> {
        Some(match s {
            "create" => EntityEvent::Create,
            "update" => EntityEvent::Update,
            "delete" => EntityEvent::Delete,
            _ => return None,
        })
    }
}

/// When a recurring schedule stops (`ends_type` and its companion field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ends {
    /// `ends_type: "never"` (the default).
    Never,
    /// `ends_type: "on"` with `ends_on_date` (inclusive, an ISO date-time as written).
    On(String),
    /// `ends_type: "after"` with `ends_after_count` runs.
    After(u32),
}

/// `trigger_conditions` of a connector automation.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerConditions {
    pub logic: Option<Logic>,
    pub conditions: Vec<Condition>,
}

/// How the conditions of a group combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logic {
    And,
    Or,
}

/// One condition, or a nested group.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `{field, operator, value?}`; unknown operators are accepted (the server decides).
    Rule {
        field: String,
        operator: String,
        value: Option<Value>,
    },
    Group(TriggerConditions),
}

/// Why an automation is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", self.subject(), self.message)]
pub struct AutomationError {
    /// Index in `automations[]`, when validated as part of a list.
    pub index: Option<usize>,
    /// The automation's name, when it has a readable one.
    pub name: Option<String>,
    /// The offending field, e.g. `cron_expression` or `event_types[1]` (empty: the whole item).
    pub field: String,
    /// What is wrong (mentions the field).
    pub message: String,
    pub hint: Option<String>,
}

impl AutomationError {
    /// `field` split into JSON path segments (`event_types[1]` -> `["event_types", "1"]`).
    pub fn field_segments(&self) -> Vec<String> {
        self.field.split(['.', '[']).map(|s| s.trim_end_matches(']').to_string()).filter(|s| !s.is_empty()).collect()
    }

    /// "automations[2] 'nightly'" or what is known of it.
    pub fn subject(&self) -> String {
        match (&self.index, &self.name) {
            (Some(i), Some(n)) => format!("automations[{i}] '{n}'"),
            (Some(i), None) => format!("automations[{i}]"),
            (None, Some(n)) => format!("automation '{n}'"),
            (None, None) => "automation".to_string(),
        }
    }
}

struct FieldError {
    field: String,
    message: String,
    hint: Option<String>,
}

fn ferr(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_string(), message: message.into(), hint: None }
}

impl FieldError {
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
}

fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 { format!("{}…", s.chars().take(60).collect::<String>()) } else { s }
}

/// Typed access to an object's fields, with field paths for errors.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Obj<'a> {
    fn path(&self, field: &str) -> String {
        if self.prefix.is_empty() { field.to_string() } else { format!("{}.{field}", self.prefix) }
    }

    /// The field's value, treating `null` as absent.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn opt_str(&self, field: &str) -> Result<Option<&'a str>, FieldError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(ferr(&self.path(field), format!("`{}` must be a string, got {}", self.path(field), show(other))))
            }
        }
    }

    fn req_str(&self, field: &str) -> Result<&'a str, FieldError> {
        self.opt_str(field)?.ok_or_else(|| ferr(&self.path(field), format!("`{}` is required", self.path(field))))
    }

    fn req_nonempty(&self, field: &str) -> Result<String, FieldError> {
        let s = self.req_str(field)?.trim();
        if s.is_empty() {
            return Err(ferr(&self.path(field), format!("`{}` must not be empty", self.path(field))));
        }
        Ok(s.to_string())
    }

    fn opt_enum(&self, field: &str, allowed: &[&'static str]) -> Result<Option<&'a str>, FieldError> {
        match self.opt_str(field)? {
            None => Ok(None),
            Some(s) if allowed.contains(&s) => Ok(Some(s)),
            Some(s) => Err(ferr(
                &self.path(field),
                format!("`{}` must be one of {}; got \"{s}\"", self.path(field), quoted_list(allowed)),
            )),
        }
    }

    fn req_enum(&self, field: &str, allowed: &[&'static str]) -> Result<&'a str, FieldError> {
        self.opt_enum(field, allowed)?.ok_or_else(|| {
            ferr(&self.path(field), format!("`{}` is required (one of {})", self.path(field), quoted_list(allowed)))
        })
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, FieldError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ferr(
                &self.path(field),
                format!("`{}` must be true or false, got {}", self.path(field), show(other)),
            )),
        }
    }

    /// A whole number in `min..=max`.
    fn opt_int(&self, field: &str, min: u64, max: u64) -> Result<Option<u64>, FieldError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => int_in(v, &self.path(field), min, max).map(Some),
        }
    }

    fn opt_array(&self, field: &str) -> Result<Option<&'a Vec<Value>>, FieldError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => {
                Err(ferr(&self.path(field), format!("`{}` must be a list, got {}", self.path(field), show(other))))
            }
        }
    }
}

fn int_in(v: &Value, path: &str, min: u64, max: u64) -> Result<u64, FieldError> {
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => {
            let range = if max == u64::from(u32::MAX) {
                format!("a whole number of at least {min}")
            } else {
                format!("a whole number from {min} to {max}")
            };
            Err(ferr(path, format!("`{path}` must be {range}, got {}", show(v))))
        }
    }
}

impl Automation {
    /// Validates one automation object.
    pub fn from_value(value: &Value) -> Result<Automation, AutomationError> {
        let name = value.get("name").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        parse_one(value).map_err(|e| AutomationError {
            index: None,
            name,
            field: e.field,
            message: e.message,
            hint: e.hint,
        })
    }

    /// The fields every kind has.
    pub fn common(&self) -> &AutomationCommon {
        match self {
            Automation::OneTime { common, .. }
            | Automation::Cron { common, .. }
            | Automation::Simple { common, .. }
            | Automation::Entity { common, .. }
            | Automation::Connector { common, .. } => common,
        }
    }

    pub fn name(&self) -> &str {
        &self.common().name
    }

    pub fn is_active(&self) -> bool {
        self.common().is_active
    }

    /// `one-time`, `cron`, `simple`, `entity` or `connector`.
    pub fn kind(&self) -> &'static str {
        match self {
            Automation::OneTime { .. } => "one-time",
            Automation::Cron { .. } => "cron",
            Automation::Simple { .. } => "simple",
            Automation::Entity { .. } => "entity",
            Automation::Connector { .. } => "connector",
        }
    }

    /// The wire JSON (defaults filled in).
    pub fn to_value(&self) -> Value {
        let common = self.common();
        let mut m = Map::new();
        m.insert("name".into(), common.name.clone().into());
        if let Some(d) = &common.description {
            m.insert("description".into(), d.clone().into());
        }
        if let Some(args) = &common.function_args {
            m.insert("function_args".into(), Value::Object(args.clone()));
        }
        m.insert("is_active".into(), common.is_active.into());
        match self {
            Automation::OneTime { one_time_date, .. } => {
                m.insert("type".into(), "scheduled".into());
                m.insert("schedule_mode".into(), "one-time".into());
                m.insert("one_time_date".into(), one_time_date.clone().into());
            }
            Automation::Cron { cron_expression, ends, .. } => {
                m.insert("type".into(), "scheduled".into());
                m.insert("schedule_mode".into(), "recurring".into());
                m.insert("schedule_type".into(), "cron".into());
                m.insert("cron_expression".into(), cron_expression.clone().into());
                write_ends(&mut m, ends);
            }
            Automation::Simple {
                repeat_unit,
                repeat_interval,
                start_time,
                repeat_on_days,
                repeat_on_day_of_month,
                ends,
                ..
            } => {
                m.insert("type".into(), "scheduled".into());
                m.insert("schedule_mode".into(), "recurring".into());
                m.insert("schedule_type".into(), "simple".into());
                m.insert("repeat_unit".into(), repeat_unit.as_str().into());
                if let Some(n) = repeat_interval {
                    m.insert("repeat_interval".into(), (*n).into());
                }
                if let Some(t) = start_time {
                    m.insert("start_time".into(), t.clone().into());
                }
                if let Some(days) = repeat_on_days {
                    m.insert("repeat_on_days".into(), days.clone().into());
                }
                if let Some(d) = repeat_on_day_of_month {
                    m.insert("repeat_on_day_of_month".into(), (*d).into());
                }
                write_ends(&mut m, ends);
            }
            Automation::Entity { entity_name, event_types, .. } => {
                m.insert("type".into(), "entity".into());
                m.insert("entity_name".into(), entity_name.clone().into());
                m.insert("event_types".into(), event_types.iter().map(|e| e.as_str()).collect::<Vec<_>>().into());
            }
            Automation::Connector { integration_type, events, resource_id, trigger_conditions, .. } => {
                m.insert("type".into(), "connector".into());
                m.insert("integration_type".into(), integration_type.clone().into());
                m.insert("events".into(), events.clone().into());
                if let Some(r) = resource_id {
                    m.insert("resource_id".into(), r.clone().into());
                }
                if let Some(tc) = trigger_conditions {
                    m.insert("trigger_conditions".into(), conditions_to_value(tc));
                }
            }
        }
        Value::Object(m)
    }
}

fn write_ends(m: &mut Map<String, Value>, ends: &Ends) {
    match ends {
        Ends::Never => {
            m.insert("ends_type".into(), "never".into());
        }
        Ends::On(date) => {
            m.insert("ends_type".into(), "on".into());
            m.insert("ends_on_date".into(), date.clone().into());
        }
        Ends::After(n) => {
            m.insert("ends_type".into(), "after".into());
            m.insert("ends_after_count".into(), (*n).into());
        }
    }
}

fn conditions_to_value(tc: &TriggerConditions) -> Value {
    let mut m = Map::new();
    if let Some(logic) = tc.logic {
        let s = match logic {
            Logic::And => "and",
            Logic::Or => "or",
        };
        m.insert("logic".into(), s.into());
    }
    let items = tc
        .conditions
        .iter()
        .map(|c| match c {
            Condition::Rule { field, operator, value } => {
                let mut r = Map::new();
                r.insert("field".into(), field.clone().into());
                r.insert("operator".into(), operator.clone().into());
                if let Some(v) = value {
                    r.insert("value".into(), v.clone());
                }
                Value::Object(r)
            }
            Condition::Group(g) => conditions_to_value(g),
        })
        .collect::<Vec<_>>();
    m.insert("conditions".into(), Value::Array(items));
    Value::Object(m)
}

impl Serialize for Automation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Automation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Automation::from_value(&value).map_err(serde::de::Error::custom)
    }
}

/// Validates the `automations` list of the function `function`: every item, and unique names.
/// An automation without a `name` is named after the function and its position
/// (`"send-digest #2"` for the second), as real `function.jsonc` files often leave it out.
pub fn parse_automations(function: &str, value: &Value) -> Result<Vec<Automation>, AutomationError> {
    let Value::Array(items) = value else {
        return Err(AutomationError {
            index: None,
            name: None,
            field: String::new(),
            message: format!("`automations` must be a list, got {}", show(value)),
            hint: None,
        });
    };
    let mut out: Vec<Automation> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let named;
        let item = match item {
            Value::Object(map)
                if map.get("name").is_none_or(|n| n.is_null() || n.as_str().is_some_and(|n| n.trim().is_empty())) =>
            {
                let mut map = map.clone();
                map.insert("name".into(), Value::String(default_automation_name(function, index)));
                named = Value::Object(map);
                &named
            }
            _ => item,
        };
        let automation = Automation::from_value(item).map_err(|mut e| {
            e.index = Some(index);
            e
        })?;
        if let Some(first) = out.iter().position(|a| a.name() == automation.name()) {
            return Err(AutomationError {
                index: Some(index),
                name: Some(automation.name().to_string()),
                field: "name".into(),
                message: format!(
                    "`name` '{}' is already used by automations[{first}]; automation names must be unique within a function",
                    automation.name()
                ),
                hint: Some("Rename one of the two automations".into()),
            });
        }
        out.push(automation);
    }
    Ok(out)
}

/// The name of the `index`th automation of `function` when it has none.
pub fn default_automation_name(function: &str, index: usize) -> String {
    format!("{function} #{}", index + 1)
}

fn parse_one(value: &Value) -> Result<Automation, FieldError> {
    let Value::Object(map) = value else {
        return Err(ferr(
            "",
            format!("each automation must be an object like {{\"name\": …, \"type\": …}}, got {}", show(value)),
        ));
    };
    let o = Obj { map, prefix: String::new() };
    let common = AutomationCommon {
        name: o.req_nonempty("name")?,
        description: o.opt_str("description")?.map(String::from),
        function_args: match o.get("function_args") {
            None => None,
            Some(Value::Object(args)) => Some(args.clone()),
            Some(other) => {
                return Err(ferr("function_args", format!("`function_args` must be an object, got {}", show(other))));
            }
        },
        is_active: o.opt_bool("is_active")?.unwrap_or(true),
    };
    match o.req_enum("type", &["scheduled", "entity", "connector"])? {
        "scheduled" => match o.req_enum("schedule_mode", &["one-time", "recurring"])? {
            "one-time" => {
                let date = o.req_str("one_time_date")?;
                check_datetime(date, "one_time_date")?;
                Ok(Automation::OneTime { common, one_time_date: date.to_string() })
            }
            _ => match o.req_enum("schedule_type", &["cron", "simple"])? {
                "cron" => {
                    let expr = o.req_str("cron_expression")?;
                    let cron = CronExpr::parse(expr).map_err(|msg| {
                        ferr("cron_expression", format!("`cron_expression` \"{expr}\" {msg}"))
                            .hint("Use five fields: minute hour day-of-month month day-of-week, e.g. \"0 9 * * 1\"")
                    })?;
                    let gap = cron.min_gap_minutes();
                    if gap < MIN_INTERVAL_MINUTES {
                        let every = if gap == 1 { "every minute".to_string() } else { format!("every {gap} minutes") };
                        return Err(ferr(
                            "cron_expression",
                            format!(
                                "`cron_expression` \"{expr}\" would run {every}; the minimum interval is {MIN_INTERVAL_MINUTES} minutes"
                            ),
                        )
                        .hint("Use a minute field such as \"*/5\" or minutes at least 5 apart"));
                    }
                    Ok(Automation::Cron { common, cron_expression: expr.to_string(), ends: parse_ends(&o)? })
                }
                _ => parse_simple(&o, common),
            },
        },
        "entity" => {
            let entity_name = o.req_nonempty("entity_name")?;
            let items = o.opt_array("event_types")?.ok_or_else(|| {
                ferr("event_types", format!("`event_types` is required (a list of {})", quoted_list(&EntityEvent::ALL)))
            })?;
            if items.is_empty() {
                return Err(ferr(
                    "event_types",
                    format!("`event_types` must not be empty; use some of {}", quoted_list(&EntityEvent::ALL)),
                ));
            }
            let mut events = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("event_types[{i}]");
                let event = item.as_str().and_then(EntityEvent::from_str).ok_or_else(|| {
                    ferr(
                        &path,
                        format!("`{path}` must be one of {}; got {}", quoted_list(&EntityEvent::ALL), show(item)),
                    )
                })?;
                if events.contains(&event) {
                    return Err(ferr(&path, format!("`{path}` repeats \"{}\"", event.as_str())));
                }
                events.push(event);
            }
            Ok(Automation::Entity { common, entity_name, event_types: events })
        }
        _ => {
            let integration_type = o.req_nonempty("integration_type")?;
            let items = o
                .opt_array("events")?
                .ok_or_else(|| ferr("events", "`events` is required (use [] to receive every event)"))?;
            let mut events = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) => events.push(s.to_string()),
                    None => {
                        let path = format!("events[{i}]");
                        return Err(ferr(&path, format!("`{path}` must be a string, got {}", show(item))));
                    }
                }
            }
            let resource_id = o.opt_str("resource_id")?.map(String::from);
            let trigger_conditions = match o.get("trigger_conditions") {
                None => None,
                Some(v) => Some(parse_group(v, "trigger_conditions")?),
            };
            Ok(Automation::Connector { common, integration_type, events, resource_id, trigger_conditions })
        }
    }
}

fn parse_simple(o: &Obj<'_>, common: AutomationCommon) -> Result<Automation, FieldError> {
    let unit = RepeatUnit::from_str(o.req_enum("repeat_unit", &RepeatUnit::ALL)?).unwrap_or(RepeatUnit::Days);
    let interval = o.opt_int("repeat_interval", 1, u64::from(u32::MAX))?.map(|n| n as u32);
    if unit == RepeatUnit::Minutes && interval.unwrap_or(1) < MIN_INTERVAL_MINUTES {
        return Err(ferr(
            "repeat_interval",
            format!(
                "`repeat_interval` must be at least {MIN_INTERVAL_MINUTES} when `repeat_unit` is \"minutes\" (got {}); the minimum interval is {MIN_INTERVAL_MINUTES} minutes",
                interval.map_or("none, meaning 1".to_string(), |n| n.to_string())
            ),
        )
        .hint("Set \"repeat_interval\": 5 or more, or use \"hours\""));
    }
    let start_time = o.opt_str("start_time")?;
    if let Some(t) = start_time
        && parse_clock(t).is_none()
    {
        return Err(ferr("start_time", format!("`start_time` must be a time of day like \"09:00\"; got \"{t}\"")));
    }
    let days = match o.opt_array("repeat_on_days")? {
        None => None,
        Some(items) => {
            let mut days = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let path = format!("repeat_on_days[{i}]");
                let day = int_in(item, &path, 0, 6).map_err(|e| e.hint("0 is Sunday, 6 is Saturday"))?;
                days.push(day as u8);
            }
            Some(days)
        }
    };
    let day_of_month = o.opt_int("repeat_on_day_of_month", 1, 31)?.map(|d| d as u8);
    Ok(Automation::Simple {
        common,
        repeat_unit: unit,
        repeat_interval: interval,
        start_time: start_time.map(String::from),
        repeat_on_days: days,
        repeat_on_day_of_month: day_of_month,
        ends: parse_ends(o)?,
    })
}

fn parse_ends(o: &Obj<'_>) -> Result<Ends, FieldError> {
    match o.opt_enum("ends_type", &["never", "on", "after"])? {
        None | Some("never") => Ok(Ends::Never),
        Some("on") => {
            let date = o.opt_str("ends_on_date")?.ok_or_else(|| {
                ferr("ends_on_date", "`ends_on_date` is required when `ends_type` is \"on\"")
                    .hint("Add e.g. \"ends_on_date\": \"2030-12-31T23:59:59Z\"")
            })?;
            check_datetime(date, "ends_on_date")?;
            Ok(Ends::On(date.to_string()))
        }
        _ => {
            let count = o.opt_int("ends_after_count", 1, u64::from(u32::MAX))?.ok_or_else(|| {
                ferr("ends_after_count", "`ends_after_count` is required when `ends_type` is \"after\"")
                    .hint("Add e.g. \"ends_after_count\": 10")
            })?;
            Ok(Ends::After(count as u32))
        }
    }
}

fn parse_group(value: &Value, path: &str) -> Result<TriggerConditions, FieldError> {
    let Value::Object(map) = value else {
        return Err(ferr(path, format!("`{path}` must be an object with `conditions`, got {}", show(value))));
    };
    let o = Obj { map, prefix: path.to_string() };
    let logic = match o.opt_enum("logic", &["and", "or"])? {
        None => None,
        Some("and") => Some(Logic::And),
        Some(_) => Some(Logic::Or),
    };
    let items = o
        .opt_array("conditions")?
        .ok_or_else(|| ferr(&o.path("conditions"), format!("`{}` is required", o.path("conditions"))))?;
    let mut conditions = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}.conditions[{i}]");
        let Value::Object(m) = item else {
            return Err(ferr(&item_path, format!("`{item_path}` must be an object, got {}", show(item))));
        };
        if m.contains_key("conditions") {
            conditions.push(Condition::Group(parse_group(item, &item_path)?));
        } else {
            let c = Obj { map: m, prefix: item_path };
            conditions.push(Condition::Rule {
                field: c.req_nonempty("field")?,
                operator: c.req_nonempty("operator")?,
                value: m.get("value").cloned(),
            });
        }
    }
    Ok(TriggerConditions { logic, conditions })
}

fn check_datetime(s: &str, field: &str) -> Result<(), FieldError> {
    if IsoDateTime::parse(s).is_some() {
        Ok(())
    } else {
        Err(ferr(field, format!("`{field}` must be an ISO 8601 date-time like \"2030-01-31T09:00:00Z\"; got \"{s}\"")))
    }
}

/// `HH:MM` or `HH:MM:SS` -> minutes since midnight.
fn parse_clock(s: &str) -> Option<u32> {
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let nums: Vec<u32> = parts.iter().map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if nums[0] > 23 || nums[1] > 59 || nums.get(2).is_some_and(|s| *s > 59) {
        return None;
    }
    Some(nums[0] * 60 + nums[1])
}

/// A parsed ISO 8601 date-time (`YYYY-MM-DDTHH:MM[:SS[.fraction]][Z|±HH:MM]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoDateTime {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanosecond: u32,
    /// Offset from UTC in minutes; `None` when the text has no zone.
    pub offset_minutes: Option<i32>,
}

impl IsoDateTime {
    /// Parses `s`; `T`, `t` or a space separate date and time.
    pub fn parse(s: &str) -> Option<IsoDateTime> {
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Option<u32> {
            let part = b.get(from..from + len)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(part).ok()?.parse().ok()
        };
        let year = num(0, 4)? as i32;
        if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
            return None;
        }
        let month = num(5, 2)?;
        let day = num(8, 2)?;
        if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
            return None;
        }
        let hour = num(11, 2)?;
        let minute = num(14, 2)?;
        let mut i = 16;
        let mut second = 0;
        let mut nanosecond = 0;
        if b.get(i) == Some(&b':') {
            second = num(i + 1, 2)?;
            i += 3;
            if matches!(b.get(i), Some(b'.' | b',')) {
                i += 1;
                let start = i;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                let digits = i - start;
                if digits == 0 || digits > 9 {
                    return None;
                }
                nanosecond = num(start, digits)? * 10u32.pow(9 - digits as u32);
            }
        }
        let offset_minutes = match b.get(i) {
            None => None,
            Some(b'Z' | b'z') => {
                i += 1;
                Some(0)
            }
            Some(sign @ (b'+' | b'-')) => {
                let sign = if *sign == b'-' { -1 } else { 1 };
                let oh = num(i + 1, 2)?;
                i += 3;
                let om = match b.get(i) {
                    Some(b':') => {
                        i += 3;
                        num(i - 2, 2)?
                    }
                    Some(_) => {
                        i += 2;
                        num(i - 2, 2)?
                    }
                    None => 0,
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                Some(sign * (oh * 60 + om) as i32)
            }
            Some(_) => return None,
        };
        if i != b.len()
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        Some(IsoDateTime {
            year,
            month: month as u8,
            day: day as u8,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            nanosecond,
            offset_minutes,
        })
    }

    /// Seconds since the Unix epoch; a date-time without a zone is taken as UTC.
    pub fn unix_seconds(&self) -> i64 {
        let days = days_from_civil(self.year, u32::from(self.month), u32::from(self.day));
        days * 86_400 + i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second)
            - i64::from(self.offset_minutes.unwrap_or(0)) * 60
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A five-field cron expression, expanded into the values each field allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    /// 0-59, sorted.
    pub minutes: Vec<u8>,
    /// 0-23, sorted.
    pub hours: Vec<u8>,
    /// 1-31, sorted.
    pub days_of_month: Vec<u8>,
    /// 1-12, sorted.
    pub months: Vec<u8>,
    /// 0-6 (0 = Sunday; 7 in the text is folded to 0), sorted.
    pub days_of_week: Vec<u8>,
    /// The day-of-month field started with `*` (classic cron: when both day fields are
    /// restricted, a day matches if either matches; otherwise both must).
    pub day_of_month_star: bool,
    /// The day-of-week field started with `*`.
    pub day_of_week_star: bool,
}

const MONTH_NAMES: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl CronExpr {
    /// Parses `minute hour day-of-month month day-of-week`: `*`, numbers, `a-b` ranges,
    /// `/step`, comma lists, and `jan`-`dec` / `sun`-`sat` names. The error completes the
    /// sentence "cron_expression '…' …".
    pub fn parse(expr: &str) -> Result<CronExpr, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "must have 5 fields (minute hour day-of-month month day-of-week), got {}",
                fields.len()
            ));
        }
        let minutes = parse_field(fields[0], "minute", 0, 59, &[], 0)?;
        let hours = parse_field(fields[1], "hour", 0, 23, &[], 0)?;
        let days_of_month = parse_field(fields[2], "day-of-month", 1, 31, &[], 0)?;
        let months = parse_field(fields[3], "month", 1, 12, &MONTH_NAMES, 1)?;
        let mut days_of_week = parse_field(fields[4], "day-of-week", 0, 7, &DAY_NAMES, 0)?;
        if days_of_week.contains(&7) {
            days_of_week.retain(|d| *d != 7);
            if !days_of_week.contains(&0) {
                days_of_week.insert(0, 0);
            }
        }
        Ok(CronExpr {
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            day_of_month_star: fields[2].starts_with('*'),
            day_of_week_star: fields[4].starts_with('*'),
        })
    }

    /// The shortest gap in minutes between two runs within a day (60 or more when the minute
    /// field allows one value; consecutive allowed hours count the wrap from :59 to :00).
    pub fn min_gap_minutes(&self) -> u32 {
        let m = &self.minutes;
        let mut gap = u32::MAX;
        for pair in m.windows(2) {
            gap = gap.min(u32::from(pair[1] - pair[0]));
        }
        let consecutive_hours = self.hours.iter().any(|h| self.hours.contains(&((h + 1) % 24)));
        if consecutive_hours && let (Some(first), Some(last)) = (m.first(), m.last()) {
            gap = gap.min(u32::from(*first) + 60 - u32::from(*last));
        }
        gap
    }
}

fn parse_field(text: &str, what: &str, min: u8, max: u8, names: &[&str], name_base: u8) -> Result<Vec<u8>, String> {
    let value = |s: &str| -> Result<u8, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(i as u8 + name_base);
        }
        match s.parse::<u8>() {
            Ok(n) if (min..=max).contains(&n) && s.bytes().all(|c| c.is_ascii_digit()) => Ok(n),
            _ => Err(format!("has an invalid {what} value '{s}' (allowed {min}-{max})")),
        }
    };
    let mut allowed = [false; 64];
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("has an empty item in the {what} field '{text}'"));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<u8>()
                    .ok()
                    .filter(|s| *s >= 1)
                    .ok_or_else(|| format!("has an invalid step '{step}' in the {what} field (use 1 or more)"))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("has a backwards {what} range '{range}'"));
            }
            (a, b)
        } else {
            let a = value(range)?;
            (a, if step.is_some() { max } else { a })
        };
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            allowed[usize::from(v)] = true;
            match v.checked_add(step) {
                Some(next) => v = next,
                None => break,
            }
        }
    }
    Ok((0..64u8).filter(|v| allowed[usize::from(*v)]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err_of(v: Value) -> AutomationError {
        Automation::from_value(&v).expect_err("expected invalid")
    }

    #[test]
    fn one_time_valid_round_trips_with_defaults() {
        let v = json!({"name": " once ", "type": "scheduled", "schedule_mode": "one-time",
                       "one_time_date": "2030-01-31T09:00:00Z", "extra": 1});
        let a = Automation::from_value(&v).unwrap();
        assert_eq!(a.kind(), "one-time");
        assert_eq!(a.name(), "once");
        assert!(a.is_active());
        assert_eq!(
            a.to_value(),
            json!({"name": "once", "is_active": true, "type": "scheduled",
                   "schedule_mode": "one-time", "one_time_date": "2030-01-31T09:00:00Z"})
        );
        let back: Automation = serde_json::from_value(serde_json::to_value(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn one_time_invalid_date() {
        for bad in ["tomorrow", "2030-02-30T09:00:00Z", "2030-01-31", "2030-01-31T25:00Z", "2030-01-31T09:00:00Zx"] {
            let e =
                err_of(json!({"name": "o", "type": "scheduled", "schedule_mode": "one-time", "one_time_date": bad}));
            assert_eq!(e.field, "one_time_date", "{bad}");
            assert!(e.message.contains("ISO 8601"), "{}", e.message);
        }
        let e = err_of(json!({"name": "o", "type": "scheduled", "schedule_mode": "one-time"}));
        assert_eq!(e.message, "`one_time_date` is required");
    }

    #[test]
    fn iso_datetime_forms() {
        let d = IsoDateTime::parse("2024-02-29T23:59:59.5+02:00").unwrap();
        assert_eq!((d.month, d.day, d.nanosecond, d.offset_minutes), (2, 29, 500_000_000, Some(120)));
        assert_eq!(IsoDateTime::parse("1970-01-01T00:00:00Z").unwrap().unix_seconds(), 0);
        assert_eq!(IsoDateTime::parse("2000-03-01T01:00:00+01:00").unwrap().unix_seconds(), 951_868_800);
        assert!(IsoDateTime::parse("2030-01-31 09:00").is_some());
        assert!(IsoDateTime::parse("2030-01-31T09:00-0530").is_some());
        assert!(IsoDateTime::parse("2023-02-29T00:00Z").is_none());
        assert!(IsoDateTime::parse("2030-01-31T09:00:00.Z").is_none());
    }

    #[test]
    fn cron_valid_with_ends() {
        let a = Automation::from_value(&json!({"name": "c", "type": "scheduled", "schedule_mode": "recurring",
            "schedule_type": "cron", "cron_expression": "*/15 9-17 * * MON-FRI", "ends_type": "after",
            "ends_after_count": 3, "is_active": false, "function_args": {"x": 1}, "description": "d"}))
        .unwrap();
        match &a {
            Automation::Cron { ends, common, .. } => {
                assert_eq!(*ends, Ends::After(3));
                assert!(!common.is_active);
                assert_eq!(common.function_args.as_ref().unwrap()["x"], 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.to_value()["ends_type"], "after");
        assert_eq!(a.to_value()["ends_after_count"], 3);
        let never = Automation::from_value(&json!({"name": "c", "type": "scheduled", "schedule_mode": "recurring",
            "schedule_type": "cron", "cron_expression": "0 0 * * *"}))
        .unwrap();
        assert_eq!(never.to_value()["ends_type"], "never");
        let on = Automation::from_value(&json!({"name": "c", "type": "scheduled", "schedule_mode": "recurring",
            "schedule_type": "cron", "cron_expression": "0 0 1 1 *", "ends_type": "on",
            "ends_on_date": "2031-01-01T00:00:00Z"}))
        .unwrap();
        assert!(matches!(on, Automation::Cron { ends: Ends::On(ref d), .. } if d == "2031-01-01T00:00:00Z"));
    }

    #[test]
    fn cron_invalid_fields() {
        let base = |expr: &str| {
            json!({"name": "c", "type": "scheduled", "schedule_mode": "recurring",
            "schedule_type": "cron", "cron_expression": expr})
        };
        let e = err_of(base("0 9 * *"));
        assert_eq!(e.field, "cron_expression");
        assert!(e.message.contains("must have 5 fields") && e.message.contains("got 4"), "{}", e.message);
        assert!(err_of(base("0 9 * * * *")).message.contains("got 6"));
        assert!(err_of(base("60 * * * *")).message.contains("invalid minute value '60'"));
        assert!(err_of(base("0 24 * * *")).message.contains("hour"));
        assert!(err_of(base("0 0 0 * *")).message.contains("day-of-month"));
        assert!(err_of(base("0 0 * 13 *")).message.contains("month"));
        assert!(err_of(base("0 0 * * 8")).message.contains("day-of-week"));
        assert!(err_of(base("0 0 * * 5-1")).message.contains("backwards"));
        assert!(err_of(base("0/0 0 * * *")).message.contains("step"));
        assert!(err_of(base("0,,5 0 * * *")).message.contains("empty item"));
        assert!(err_of(base("@hourly")).message.contains("5 fields"));
    }

    #[test]
    fn cron_minimum_interval() {
        let base = |expr: &str| {
            json!({"name": "c", "type": "scheduled", "schedule_mode": "recurring",
            "schedule_type": "cron", "cron_expression": expr})
        };
        let e = err_of(base("* * * * *"));
        assert_eq!(
            e.message,
            "`cron_expression` \"* * * * *\" would run every minute; the minimum interval is 5 minutes"
        );
        assert!(e.hint.is_some());
        assert!(err_of(base("*/4 * * * *")).message.contains("every 4 minutes"));
        assert!(err_of(base("0,3 * * * *")).message.contains("every 3 minutes"));
        // :58 then :00 of the next hour is 2 minutes apart.
        assert!(err_of(base("0,58 * * * *")).message.contains("every 2 minutes"));
        // ...but not when the hours are not consecutive.
        assert!(Automation::from_value(&base("0,58 9,12 * * *")).is_ok());
        assert!(Automation::from_value(&base("*/5 * * * *")).is_ok());
        assert!(Automation::from_value(&base("0 * * * *")).is_ok());
        assert_eq!(CronExpr::parse("*/5 * * * *").unwrap().min_gap_minutes(), 5);
    }

    #[test]
    fn cron_expr_expansion() {
        let c = CronExpr::parse("5/20 1,3-4 */10 jan,Dec sun,7,6").unwrap();
        assert_eq!(c.minutes, vec![5, 25, 45]);
        assert_eq!(c.hours, vec![1, 3, 4]);
        assert_eq!(c.days_of_month, vec![1, 11, 21, 31]);
        assert_eq!(c.months, vec![1, 12]);
        assert_eq!(c.days_of_week, vec![0, 6]);
        assert!(c.day_of_month_star && !c.day_of_week_star);
    }

    #[test]
    fn ends_fields_required_by_ends_type() {
        let base = |extra: Value| {
            let mut v = json!({"name": "c", "type": "scheduled", "schedule_mode": "recurring",
                "schedule_type": "cron", "cron_expression": "0 0 * * *"});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            v
        };
        let e = err_of(base(json!({"ends_type": "on"})));
        assert_eq!(e.field, "ends_on_date");
        assert!(e.message.contains("required when `ends_type` is \"on\""));
        let e = err_of(base(json!({"ends_type": "after"})));
        assert_eq!(e.field, "ends_after_count");
        let e = err_of(base(json!({"ends_type": "after", "ends_after_count": 0})));
        assert!(e.message.contains("at least 1"), "{}", e.message);
        let e = err_of(base(json!({"ends_type": "on", "ends_on_date": "soon"})));
        assert_eq!(e.field, "ends_on_date");
        let e = err_of(base(json!({"ends_type": "sometime"})));
        assert_eq!(e.message, "`ends_type` must be one of \"never\", \"on\", \"after\"; got \"sometime\"");
    }

    fn simple(extra: Value) -> Value {
        let mut v = json!({"name": "s", "type": "scheduled", "schedule_mode": "recurring",
            "schedule_type": "simple"});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    }

    #[test]
    fn simple_valid() {
        let a = Automation::from_value(&simple(json!({"repeat_unit": "weeks", "repeat_interval": 2,
            "start_time": "09:30", "repeat_on_days": [1, 3, 5], "ends_type": "never"})))
        .unwrap();
        assert_eq!(
            a.to_value(),
            json!({"name": "s", "is_active": true, "type": "scheduled", "schedule_mode": "recurring",
                   "schedule_type": "simple", "repeat_unit": "weeks", "repeat_interval": 2,
                   "start_time": "09:30", "repeat_on_days": [1, 3, 5], "ends_type": "never"})
        );
        let m =
            Automation::from_value(&simple(json!({"repeat_unit": "months", "repeat_on_day_of_month": 31}))).unwrap();
        assert!(matches!(
            m,
            Automation::Simple { repeat_on_day_of_month: Some(31), repeat_unit: RepeatUnit::Months, .. }
        ));
        assert!(Automation::from_value(&simple(json!({"repeat_unit": "minutes", "repeat_interval": 5}))).is_ok());
        assert!(Automation::from_value(&simple(json!({"repeat_unit": "hours"}))).is_ok());
    }

    #[test]
    fn simple_invalid() {
        let e = err_of(simple(json!({})));
        assert_eq!(e.field, "repeat_unit");
        let e = err_of(simple(json!({"repeat_unit": "fortnights"})));
        assert!(e.message.contains("\"minutes\", \"hours\", \"days\", \"weeks\", \"months\""));
        let e = err_of(simple(json!({"repeat_unit": "days", "repeat_interval": 0})));
        assert_eq!(e.field, "repeat_interval");
        assert!(err_of(simple(json!({"repeat_unit": "days", "repeat_interval": -2}))).message.contains("at least 1"));
        assert!(
            err_of(simple(json!({"repeat_unit": "days", "repeat_interval": 1.5}))).message.contains("whole number")
        );
        let e = err_of(simple(json!({"repeat_unit": "minutes", "repeat_interval": 2})));
        assert!(
            e.message.contains("at least 5") && e.message.contains("minimum interval is 5 minutes"),
            "{}",
            e.message
        );
        let e = err_of(simple(json!({"repeat_unit": "minutes"})));
        assert_eq!(e.field, "repeat_interval");
        let e = err_of(simple(json!({"repeat_unit": "weeks", "repeat_on_days": [1, 7]})));
        assert_eq!(e.field, "repeat_on_days[1]");
        assert_eq!(e.field_segments(), vec!["repeat_on_days", "1"]);
        let e = err_of(simple(json!({"repeat_unit": "months", "repeat_on_day_of_month": 32})));
        assert_eq!(e.field, "repeat_on_day_of_month");
        assert!(e.message.contains("from 1 to 31"));
        assert!(
            err_of(simple(json!({"repeat_unit": "months", "repeat_on_day_of_month": 0})))
                .message
                .contains("from 1 to 31")
        );
        let e = err_of(simple(json!({"repeat_unit": "days", "start_time": "9am"})));
        assert_eq!(e.field, "start_time");
        assert!(err_of(simple(json!({"repeat_unit": "days", "start_time": "24:00"}))).field == "start_time");
        assert!(err_of(simple(json!({"repeat_unit": "days", "ends_type": "on"}))).field == "ends_on_date");
    }

    #[test]
    fn entity_valid_and_invalid() {
        let a = Automation::from_value(&json!({"name": "e", "type": "entity", "entity_name": "Order",
            "event_types": ["create", "delete"]}))
        .unwrap();
        assert!(
            matches!(&a, Automation::Entity { event_types, .. } if *event_types == vec![EntityEvent::Create, EntityEvent::Delete])
        );
        assert_eq!(a.to_value()["event_types"], json!(["create", "delete"]));
        let e = err_of(json!({"name": "e", "type": "entity", "entity_name": "Order", "event_types": []}));
        assert!(e.message.contains("must not be empty"));
        let e = err_of(json!({"name": "e", "type": "entity", "entity_name": "Order", "event_types": ["created"]}));
        assert_eq!(e.field, "event_types[0]");
        assert!(e.message.contains("\"create\", \"update\", \"delete\""));
        let e =
            err_of(json!({"name": "e", "type": "entity", "entity_name": "Order", "event_types": ["update", "update"]}));
        assert!(e.message.contains("repeats"));
        let e = err_of(json!({"name": "e", "type": "entity", "event_types": ["update"]}));
        assert_eq!(e.field, "entity_name");
        let e = err_of(json!({"name": "e", "type": "entity", "entity_name": "Order"}));
        assert_eq!(e.field, "event_types");
    }

    #[test]
    fn connector_valid_and_invalid() {
        let v = json!({"name": "k", "type": "connector", "integration_type": "slack", "events": [],
            "resource_id": "C1", "trigger_conditions": {"logic": "or", "conditions": [
                {"field": "text", "operator": "contains", "value": "hi"},
                {"logic": "and", "conditions": [{"field": "user", "operator": "exists"}]},
                {"field": "n", "operator": "some_future_op", "value": null}]}});
        let a = Automation::from_value(&v).unwrap();
        let Automation::Connector { trigger_conditions: Some(tc), events, .. } = &a else { panic!() };
        assert!(events.is_empty());
        assert_eq!(tc.logic, Some(Logic::Or));
        assert!(matches!(&tc.conditions[1], Condition::Group(g) if g.logic == Some(Logic::And)));
        let mut expected = v.clone();
        expected["is_active"] = json!(true);
        assert_eq!(a.to_value(), expected);
        let e = err_of(json!({"name": "k", "type": "connector", "integration_type": "slack"}));
        assert_eq!(e.field, "events");
        let e = err_of(json!({"name": "k", "type": "connector", "events": []}));
        assert_eq!(e.field, "integration_type");
        let e = err_of(json!({"name": "k", "type": "connector", "integration_type": "slack", "events": [1]}));
        assert_eq!(e.field, "events[0]");
        let e = err_of(json!({"name": "k", "type": "connector", "integration_type": "slack", "events": [],
            "trigger_conditions": {"logic": "xor", "conditions": []}}));
        assert_eq!(e.field, "trigger_conditions.logic");
        let e = err_of(json!({"name": "k", "type": "connector", "integration_type": "slack", "events": [],
            "trigger_conditions": {"conditions": [{"logic": "and", "conditions": [{"field": "a"}]}]}}));
        assert_eq!(e.field, "trigger_conditions.conditions[0].conditions[0].operator");
        assert_eq!(e.field_segments(), vec!["trigger_conditions", "conditions", "0", "conditions", "0", "operator"]);
    }

    #[test]
    fn common_fields_validated() {
        let e = err_of(json!({"type": "entity"}));
        assert_eq!((e.field.as_str(), e.message.as_str()), ("name", "`name` is required"));
        assert_eq!(err_of(json!({"name": "  ", "type": "entity"})).message, "`name` must not be empty");
        let e = err_of(json!({"name": "x"}));
        assert_eq!(e.message, "`type` is required (one of \"scheduled\", \"entity\", \"connector\")");
        assert_eq!(e.name.as_deref(), Some("x"));
        assert_eq!(err_of(json!({"name": "x", "type": "webhook"})).field, "type");
        assert_eq!(err_of(json!({"name": "x", "type": "scheduled"})).field, "schedule_mode");
        assert_eq!(
            err_of(json!({"name": "x", "type": "scheduled", "schedule_mode": "recurring"})).field,
            "schedule_type"
        );
        assert_eq!(err_of(json!({"name": "x", "type": "entity", "is_active": "yes"})).field, "is_active");
        assert_eq!(err_of(json!({"name": "x", "type": "entity", "function_args": [1]})).field, "function_args");
        assert_eq!(err_of(json!({"name": "x", "type": "entity", "description": 3})).field, "description");
        assert_eq!(err_of(json!("nope")).field, "");
    }

    #[test]
    fn list_names_index_and_uniqueness() {
        let ok = json!([
            {"name": "a", "type": "entity", "entity_name": "T", "event_types": ["create"]},
            {"name": "b", "type": "entity", "entity_name": "T", "event_types": ["delete"]}]);
        assert_eq!(parse_automations("f", &ok).unwrap().len(), 2);
        let dup = json!([
            {"name": "a", "type": "entity", "entity_name": "T", "event_types": ["create"]},
            {"name": "a", "type": "entity", "entity_name": "T", "event_types": ["delete"]}]);
        let e = parse_automations("f", &dup).unwrap_err();
        assert_eq!(e.index, Some(1));
        assert!(e.to_string().starts_with("automations[1] 'a': `name` 'a' is already used by automations[0]"), "{e}");
        let bad = json!([ok[0].clone(), {"name": "nightly", "type": "scheduled", "schedule_mode": "recurring",
            "schedule_type": "cron", "cron_expression": "0 0 * *"}]);
        let e = parse_automations("f", &bad).unwrap_err();
        assert_eq!((e.index, e.name.as_deref(), e.field.as_str()), (Some(1), Some("nightly"), "cron_expression"));
        assert!(e.to_string().starts_with("automations[1] 'nightly': `cron_expression`"));
        assert!(parse_automations("f", &json!({"a": 1})).unwrap_err().message.contains("must be a list"));
    }

    #[test]
    fn deserialize_validates() {
        let r: Result<Automation, _> = serde_json::from_value(json!({"name": "x", "type": "entity"}));
        assert!(r.unwrap_err().to_string().contains("entity_name"));
    }
}
