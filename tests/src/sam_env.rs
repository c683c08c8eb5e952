//! The environment `template.yaml` gives each function, resolved for a local run.
//!
//! For a function `F` (the `AWS::Serverless::Function` whose `CodeUri` is `functions/F`) the environment is:
//! - `Globals.Function.Environment.Variables`, overridden by the function's own `Environment.Variables`, with every
//!   intrinsic resolved: `Ref` to a parameter gives its test value (or its default), `Ref` / `Fn::GetAtt` to a
//!   resource gives the local stand-in registered for it, `Fn::Sub` substitutes both, and a
//!   `{{resolve:secretsmanager:ARN:SecretString:KEY}}` dynamic reference gives the test secret's `KEY`;
//! - what Lambda itself sets for a `provided.al2023` function: region, credentials, the function's name, memory and
//!   version, its log group, and `AWS_LAMBDA_LOG_FORMAT` / `AWS_LAMBDA_LOG_LEVEL` from its `LoggingConfig`;
//! - `AWS_ENDPOINT_URL_DYNAMODB` and `AWS_ENDPOINT_URL_SQS`, which send the SDK's DynamoDB and SQS clients to the
//!   local emulators. They stand in for AWS's DNS and are the only variables a deployed function does not have.
//!
//! A resolved value that still points at `*.amazonaws.com` must be mapped to a local endpoint with
//! [`Resolver::endpoint`], so that nothing a test starts can reach AWS. Anything the resolver does not know (a new
//! parameter without a default, a resource without a stand-in, an unsupported intrinsic) is an error naming it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;

/// The region of every local run.
pub const REGION: &str = "us-east-1";
/// The account the local ARNs name.
pub const ACCOUNT_ID: &str = "123456789012";
/// Credentials in the shape Lambda hands a function (a role session). Fixed dummy values: every endpoint they are
/// used with is a local emulator, and DynamoDB Local keeps one database per access key, so the harness and the
/// test's own store client must sign with the same key to see the functions' table.
pub const ACCESS_KEY_ID: &str = "AKIDBELLHOPLOCAL";
pub const SECRET_ACCESS_KEY: &str = "bellhop-local-dummy-secret";
/// The prefix of each function's session token; [`session_token`] gives the whole token.
pub const SESSION_TOKEN_PREFIX: &str = "bellhop-local-session-";

/// The session token of `package`'s role session. Each function has its own, as each has its own role on AWS, so a
/// recording proxy can tell which function made a request (see `aws_calls`).
pub fn session_token(package: &str) -> String {
    format!("{SESSION_TOKEN_PREFIX}{package}")
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not YAML")]
    Parse {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("no AWS::Serverless::Function has CodeUri functions/{0}")]
    UnknownFunction(String),
    #[error("parameter {0} has no default and no test value")]
    MissingParameter(String),
    #[error("test value `{value}` of parameter {name} is not allowed by the template: {reason}")]
    InvalidParameter { name: String, value: String, reason: String },
    #[error("{0} has no local stand-in; register one with Resolver::resource")]
    UnknownReference(String),
    #[error("{variable}: unsupported value {value}")]
    Unsupported { variable: String, value: String },
    #[error("no test secret {arn} with key {key}")]
    UnknownSecret { arn: String, key: String },
    #[error("{variable} would reach AWS at {url}; map it to a local endpoint with Resolver::endpoint")]
    RemoteEndpoint { variable: String, url: String },
}

/// One function as the template deploys it, resolved for a local run.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The package, folder and binary name.
    pub package: String,
    /// The template's logical id, e.g. `ConnectFunction`.
    pub logical_id: String,
    pub memory_mb: u64,
    pub timeout: Duration,
    /// The complete process environment, without `AWS_LAMBDA_RUNTIME_API` (the Runtime API's own address).
    pub env: BTreeMap<String, String>,
    /// The names of the variables that come from the template (Globals and the function's own), for tests that
    /// take one away.
    pub template_variables: Vec<String>,
    /// The `Allow` statements of the function's `Policies`, resolved (conditions evaluated, ARNs filled in).
    pub policy: Vec<PolicyStatement>,
}

/// One `Allow` statement of a function's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatement {
    pub sid: String,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

impl FunctionSpec {
    /// Whether one of the function's statements allows `action` on `resource` (IAM's matching: actions without
    /// regard to case, `*` and `?` wildcards in both).
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        self.policy.iter().any(|statement| {
            statement.actions.iter().any(|a| wildcard_match(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
                && statement.resources.iter().any(|r| wildcard_match(r, resource))
        })
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` any one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t, mut star, mut mark) = (0, 0, None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Resolves the template's intrinsics against test values and local stand-ins.
#[derive(Debug, Clone)]
pub struct Resolver {
    template: Value,
    parameters: HashMap<String, String>,
    resources: HashMap<String, String>,
    secrets: HashMap<String, HashMap<String, String>>,
    endpoints: HashMap<String, String>,
    service_endpoints: BTreeMap<String, String>,
}

impl Resolver {
    /// Reads `template.yaml` at `path`.
    pub fn from_file(path: &Path) -> Result<Self, TemplateError> {
        let display = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| TemplateError::Read { path: display.clone(), source })?;
        let template = serde_yaml::from_str(&text).map_err(|source| TemplateError::Parse { path: display, source })?;
        Ok(Self {
            template,
            parameters: HashMap::new(),
            resources: HashMap::new(),
            secrets: HashMap::new(),
            endpoints: HashMap::new(),
            service_endpoints: BTreeMap::new(),
        })
    }

    /// The test value of a template parameter (checked against its `AllowedValues`, `MinValue` and `MaxValue`).
    pub fn parameter(mut self, name: &str, value: impl Into<String>) -> Self {
        self.parameters.insert(name.to_owned(), value.into());
        self
    }

    /// The local stand-in of a resource: what `Ref: logical_id` (or, with `Logical.Attribute`, `Fn::GetAtt`) gives.
    pub fn resource(mut self, reference: &str, value: impl Into<String>) -> Self {
        self.resources.insert(reference.to_owned(), value.into());
        self
    }

    /// A test secret: the JSON keys of the Secrets Manager secret `arn`.
    pub fn secret(mut self, arn: &str, keys: &[(&str, &str)]) -> Self {
        let keys = keys.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.secrets.insert(arn.to_owned(), keys);
        self
    }

    /// Maps a resolved AWS URL (e.g. the Management API endpoint) to the local endpoint that plays it.
    pub fn endpoint(mut self, aws_url: impl Into<String>, local_url: impl Into<String>) -> Self {
        self.endpoints.insert(aws_url.into(), local_url.into());
        self
    }

    /// Sends one AWS service's SDK clients to a local endpoint through `AWS_ENDPOINT_URL_{SERVICE}`
    /// (`DYNAMODB`, `SQS`).
    pub fn service_endpoint(mut self, service: &str, url: impl Into<String>) -> Self {
        self.service_endpoints.insert(service.to_ascii_uppercase(), url.into());
        self
    }

    /// The folders of `functions/` the template deploys, by package name.
    pub fn packages(&self) -> Vec<String> {
        let mut packages: Vec<String> = self.functions().map(|(package, _, _)| package).collect();
        packages.sort();
        packages
    }

    /// The resolved deployment of `functions/{package}`.
    pub fn function(&self, package: &str) -> Result<FunctionSpec, TemplateError> {
        let (logical_id, function) = self
            .functions()
            .find(|(p, _, _)| p == package)
            .map(|(_, id, f)| (id, f))
            .ok_or_else(|| TemplateError::UnknownFunction(package.to_owned()))?;
        let properties = &function["Properties"];
        let globals = &self.template["Globals"]["Function"];
        let setting = |key: &str| match &properties[key] {
            Value::Null => globals[key].clone(),
            value => value.clone(),
        };
        let memory_mb = setting("MemorySize").as_u64().unwrap_or(128);
        let timeout = Duration::from_secs(setting("Timeout").as_u64().unwrap_or(3));

        let mut declared: BTreeMap<String, Value> = BTreeMap::new();
        for source in [&globals["Environment"]["Variables"], &properties["Environment"]["Variables"]] {
            for (name, value) in source.as_mapping().into_iter().flatten() {
                if let Some(name) = name.as_str() {
                    declared.insert(name.to_owned(), value.clone());
                }
            }
        }
        let mut env = BTreeMap::new();
        for (name, value) in &declared {
            let resolved = self.resolve(name, value)?;
            env.insert(name.clone(), self.localise(name, resolved)?);
        }
        let template_variables = declared.keys().cloned().collect();

        // What the Lambda service sets (docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html).
        let logging = match &properties["LoggingConfig"] {
            Value::Null => globals["LoggingConfig"].clone(),
            own => {
                let mut merged = globals["LoggingConfig"].as_mapping().cloned().unwrap_or_default();
                merged.extend(own.as_mapping().cloned().unwrap_or_default());
                Value::Mapping(merged)
            }
        };
        let log_group = format!("/aws/lambda/bellhop-{logical_id}");
        let lambda = [
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
            ("AWS_SESSION_TOKEN", session_token(package)),
            ("AWS_LAMBDA_FUNCTION_NAME", format!("bellhop-{logical_id}")),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", log_group),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef".to_owned()),
            ("_HANDLER", self.string_setting(&setting("Handler"), "Handler")?),
            ("LAMBDA_TASK_ROOT", "/var/task".to_owned()),
            ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_owned()),
            ("LANG", "en_US.UTF-8".to_owned()),
            ("TZ", ":UTC".to_owned()),
            ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".to_owned()),
            (
                "LD_LIBRARY_PATH",
                "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib".to_owned(),
            ),
        ];
        for (name, value) in lambda {
            env.insert(name.to_owned(), value);
        }
        if let Some(format) = logging["LogFormat"].as_str() {
            env.insert("AWS_LAMBDA_LOG_FORMAT".to_owned(), format.to_owned());
            // Lambda passes the application log level only with the JSON log format.
            if format == "JSON" && !logging["ApplicationLogLevel"].is_null() {
                let level = self.resolve("LoggingConfig.ApplicationLogLevel", &logging["ApplicationLogLevel"])?;
                env.insert("AWS_LAMBDA_LOG_LEVEL".to_owned(), level);
            }
        }
        for (service, url) in &self.service_endpoints {
            env.insert(format!("AWS_ENDPOINT_URL_{service}"), url.clone());
        }
        let policy = self.policy(&logical_id, &properties["Policies"])?;
        Ok(FunctionSpec {
            package: package.to_owned(),
            logical_id,
            memory_mb,
            timeout,
            env,
            template_variables,
            policy,
        })
    }

    /// The `Allow` statements of `Policies` (inline `Statement` lists only; the template uses no managed policies
    /// or SAM policy templates, and one here is an error).
    fn policy(&self, logical_id: &str, policies: &Value) -> Result<Vec<PolicyStatement>, TemplateError> {
        let mut statements = Vec::new();
        for policy in policies.as_sequence().into_iter().flatten() {
            let Some(list) = policy["Statement"].as_sequence() else {
                return Err(TemplateError::Unsupported {
                    variable: format!("{logical_id}.Policies"),
                    value: format!("{policy:?}"),
                });
            };
            for statement in list {
                let Some(statement) = self.evaluate_if(statement)? else { continue };
                if statement["Effect"].as_str() != Some("Allow") {
                    continue;
                }
                let name = format!("{logical_id}.Policies.{}", statement["Sid"].as_str().unwrap_or("?"));
                let list_of = |value: &Value| -> Result<Vec<String>, TemplateError> {
                    match value {
                        Value::Sequence(items) => items.iter().map(|item| self.resolve(&name, item)).collect(),
                        single => Ok(vec![self.resolve(&name, single)?]),
                    }
                };
                statements.push(PolicyStatement {
                    sid: statement["Sid"].as_str().unwrap_or_default().to_owned(),
                    actions: list_of(&statement["Action"])?,
                    resources: list_of(&statement["Resource"])?,
                });
            }
        }
        Ok(statements)
    }

    /// `Fn::If: [condition, then, else]` chosen by the template's `Conditions` (`Fn::Equals` of two values);
    /// `None` for `Ref: AWS::NoValue`. Any other value is returned as is.
    fn evaluate_if(&self, value: &Value) -> Result<Option<Value>, TemplateError> {
        let Some(branches) = value.get("Fn::If").and_then(Value::as_sequence) else {
            let no_value = value.get("Ref").and_then(Value::as_str) == Some("AWS::NoValue");
            return Ok((!no_value).then(|| value.clone()));
        };
        let unsupported = || TemplateError::Unsupported { variable: "Fn::If".to_owned(), value: format!("{value:?}") };
        let [condition, then, otherwise] = branches.as_slice() else { return Err(unsupported()) };
        let condition = condition.as_str().ok_or_else(unsupported)?;
        let operands = self.template["Conditions"][condition]["Fn::Equals"].as_sequence().ok_or_else(unsupported)?;
        let [left, right] = operands.as_slice() else { return Err(unsupported()) };
        let holds = self.resolve(condition, left)? == self.resolve(condition, right)?;
        self.evaluate_if(if holds { then } else { otherwise })
    }

    fn functions(&self) -> impl Iterator<Item = (String, String, &Value)> {
        self.template["Resources"].as_mapping().into_iter().flatten().filter_map(|(id, resource)| {
            let is_function = resource["Type"].as_str() == Some("AWS::Serverless::Function");
            let package = resource["Properties"]["CodeUri"].as_str()?.strip_prefix("functions/")?;
            let id = id.as_str()?;
            is_function.then(|| (package.trim_end_matches('/').to_owned(), id.to_owned(), resource))
        })
    }

    fn string_setting(&self, value: &Value, name: &str) -> Result<String, TemplateError> {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| TemplateError::Unsupported { variable: name.to_owned(), value: format!("{value:?}") })
    }

    /// Resolves one value of the template: a scalar, `Ref`, `Fn::GetAtt` or `Fn::Sub` (string form).
    fn resolve(&self, variable: &str, value: &Value) -> Result<String, TemplateError> {
        let unsupported = || TemplateError::Unsupported { variable: variable.to_owned(), value: format!("{value:?}") };
        match value {
            Value::String(text) => Ok(text.clone()),
            Value::Number(number) => Ok(number.to_string()),
            Value::Bool(flag) => Ok(flag.to_string()),
            Value::Mapping(map) if map.len() == 1 => {
                let (key, argument) = map.iter().next().ok_or_else(unsupported)?;
                match (key.as_str(), argument) {
                    (Some("Ref"), Value::String(name)) => self.reference(name),
                    (Some("Fn::GetAtt"), Value::Sequence(parts)) => {
                        let parts: Option<Vec<&str>> = parts.iter().map(Value::as_str).collect();
                        self.reference(&parts.ok_or_else(unsupported)?.join("."))
                    }
                    (Some("Fn::Sub"), Value::String(text)) => self.substitute(text),
                    _ => Err(unsupported()),
                }
            }
            _ => Err(unsupported()),
        }
    }

    /// `Ref` / `Fn::GetAtt` / `${...}`: a pseudo parameter, a template parameter or a registered resource.
    fn reference(&self, name: &str) -> Result<String, TemplateError> {
        match name {
            "AWS::Region" => return Ok(REGION.to_owned()),
            "AWS::AccountId" => return Ok(ACCOUNT_ID.to_owned()),
            "AWS::Partition" => return Ok("aws".to_owned()),
            "AWS::URLSuffix" => return Ok("amazonaws.com".to_owned()),
            "AWS::StackName" => return Ok("bellhop".to_owned()),
            _ => {}
        }
        if let Some(parameter) = self.template["Parameters"].get(name) {
            return self.parameter_value(name, parameter);
        }
        self.resources.get(name).cloned().ok_or_else(|| TemplateError::UnknownReference(name.to_owned()))
    }

    fn parameter_value(&self, name: &str, declaration: &Value) -> Result<String, TemplateError> {
        let value = match (self.parameters.get(name), &declaration["Default"]) {
            (Some(value), _) => value.clone(),
            (None, Value::Null) => return Err(TemplateError::MissingParameter(name.to_owned())),
            (None, default) => self.resolve(name, default)?,
        };
        let invalid =
            |reason: String| TemplateError::InvalidParameter { name: name.to_owned(), value: value.clone(), reason };
        if let Some(allowed) = declaration["AllowedValues"].as_sequence() {
            let allowed: Vec<String> = allowed.iter().filter_map(|v| self.resolve(name, v).ok()).collect();
            if !allowed.contains(&value) {
                return Err(invalid(format!("not one of {allowed:?}")));
            }
        }
        if declaration["Type"].as_str() == Some("Number") {
            let number: f64 = value.parse().map_err(|_| invalid("not a number".to_owned()))?;
            if declaration["MinValue"].as_f64().is_some_and(|min| number < min) {
                return Err(invalid(format!("below MinValue {:?}", declaration["MinValue"])));
            }
            if declaration["MaxValue"].as_f64().is_some_and(|max| number > max) {
                return Err(invalid(format!("above MaxValue {:?}", declaration["MaxValue"])));
            }
        }
        Ok(value)
    }

    /// `Fn::Sub`'s string form: `${Name}` and `${Name.Attribute}` substituted, `${!Literal}` kept as `${Literal}`;
    /// then the Secrets Manager dynamic references CloudFormation resolves at deploy time.
    fn substitute(&self, text: &str) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| TemplateError::Unsupported { variable: "Fn::Sub".to_owned(), value: text.to_owned() })?;
            let name = &after[..end];
            match name.strip_prefix('!') {
                Some(literal) => {
                    out.push_str("${");
                    out.push_str(literal);
                    out.push('}');
                }
                None => out.push_str(&self.reference(name)?),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        self.resolve_secrets(&out)
    }

    /// `{{resolve:secretsmanager:ARN:SecretString:KEY}}` → the test secret's `KEY`.
    fn resolve_secrets(&self, text: &str) -> Result<String, TemplateError> {
        const OPEN: &str = "{{resolve:secretsmanager:";
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find(OPEN) {
            out.push_str(&rest[..start]);
            let after = &rest[start + OPEN.len()..];
            let unsupported =
                || TemplateError::Unsupported { variable: "dynamic reference".to_owned(), value: text.to_owned() };
            let end = after.find("}}").ok_or_else(unsupported)?;
            let (arn, key) = after[..end].split_once(":SecretString:").ok_or_else(unsupported)?;
            let value = self
                .secrets
                .get(arn)
                .and_then(|keys| keys.get(key))
                .ok_or_else(|| TemplateError::UnknownSecret { arn: arn.to_owned(), key: key.to_owned() })?;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Swaps an AWS endpoint for its local stand-in; an AWS URL without one is an error.
    fn localise(&self, variable: &str, value: String) -> Result<String, TemplateError> {
        if let Some(local) = self.endpoints.get(&value) {
            return Ok(local.clone());
        }
        if value.contains(".amazonaws.com") {
            return Err(TemplateError::RemoteEndpoint { variable: variable.to_owned(), url: value });
        }
        Ok(value)
    }
}
