//! A location's settings as its directives make them: each directive's value checked, the
//! duplicates and conflicting combinations refused with the message `nginx -t` prints, and the
//! inheritance from the enclosing level. The glue hands every directive's arguments here and
//! keeps only what needs nginx (compiled complex values, the proxy module's handler).

use super::{
    parse_seconds, parse_switch, validate_s3_credential, validate_s3_region, ProxyPassUrl,
    StatusMapping,
};

/// Where a directive was written, for errors found after its block was read (merge time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub file: String,
    pub line: usize,
}

/// A value together with where it was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub at: Position,
}

/// S3 request signing for sources under a location.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    pub access_key: Option<Setting<String>>,
    pub secret_key: Option<Setting<String>>,
    pub region: Option<Setting<String>>,
    pub security_token: Option<Setting<String>>,
}

impl S3Settings {
    /// Access key and secret key, both set (merge refuses one without the other).
    pub fn credentials(&self) -> Option<(&str, &str)> {
        Some((
            &self.access_key.as_ref()?.value,
            &self.secret_key.as_ref()?.value,
        ))
    }

    fn any(&self) -> bool {
        self.access_key.is_some()
            || self.secret_key.is_some()
            || self.region.is_some()
            || self.security_token.is_some()
    }
}

/// The content handler a location gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentHandler {
    /// The module's packaging handler (`usp_handle_ism`, `usp_handle_f4f`, `usp_handle_api`,
    /// `ism_proxy_pass`).
    Packaging,
    /// The status endpoint (`origin_status`).
    StatusEndpoint,
}

/// A location's settings. Unset values stay `None` until [`LocationSettings::merge`]; after it
/// every switch is `Some`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocationSettings {
    pub handle_ism: Option<bool>,
    pub iss_pass_through: Option<bool>,
    pub prefer_static: Option<bool>,
    /// `origin_static_root`: where `usp_prefer_static` looks for files, in place of the
    /// location's `root` or `alias` (a tree that mirrors it, as `ismtool package` writes one);
    /// ours.
    pub static_root: Option<String>,
    pub skip_rewrite: Option<bool>,
    pub handle_f4f: Option<bool>,
    pub handle_api: Option<bool>,
    pub disable_mmap: Option<bool>,
    pub dynamic_time_shift_buffer_depth: Option<bool>,
    /// `origin_live_auto_create`: an encoder's first push creates an unknown channel; off
    /// (the default), only channels made beforehand (an `.isml` file, or PUT) take ingest.
    pub live_auto_create: Option<bool>,
    /// `origin_live_max_tracks`: most tracks a push may bring a channel to (ours).
    pub live_max_tracks: Option<usize>,
    /// `origin_live_max_channels`: with auto-creation, a push creates a channel only while
    /// its folder holds fewer publishing points (ours).
    pub live_max_channels: Option<usize>,
    /// `ism_proxy_pass`: the location's files are remote. Not inherited.
    pub proxy_pass: Option<Setting<ProxyPassUrl>>,
    /// `origin_remote_ttl`: seconds a remote object's version is trusted before a request
    /// checks it again (ours; the commercial module has no equivalent).
    pub remote_ttl: Option<u64>,
    pub s3: S3Settings,
    /// `origin_status_map`: error statuses answered as others (ours; the commercial module's
    /// users do this with Lua). `None` until set here or inherited.
    pub status_map: Option<Vec<StatusMapping>>,
    /// `origin_status`: this location answers with the counters of the status endpoint.
    pub status_endpoint: Option<bool>,
}

/// The switches that make a location's content handler the module's packaging handler.
pub const HANDLER_SWITCHES: [&str; 3] = ["usp_handle_ism", "usp_handle_f4f", "usp_handle_api"];

/// A location has one content handler: the packaging module's or the status endpoint's.
fn both_handlers(directive: &str) -> String {
    format!(
        "\"{directive}\" and \"origin_status\" in one location: a location either packages or reports"
    )
}

fn duplicate(name: &str) -> String {
    format!("\"{name}\" directive is duplicate")
}

fn invalid(name: &str, value: &str, why: &str) -> String {
    format!("invalid value \"{value}\" in \"{name}\" directive, {why}")
}

fn argument_count(name: &str) -> String {
    format!("invalid number of arguments in \"{name}\" directive")
}

impl LocationSettings {
    /// A switch's merged value (`false` when never set anywhere).
    pub fn on(flag: Option<bool>) -> bool {
        flag.unwrap_or(false)
    }

    fn switch_mut(&mut self, name: &str) -> Option<&mut Option<bool>> {
        Some(match name {
            "usp_handle_ism" => &mut self.handle_ism,
            "usp_iss_pass_through" => &mut self.iss_pass_through,
            "usp_prefer_static" => &mut self.prefer_static,
            "usp_skip_rewrite" => &mut self.skip_rewrite,
            "usp_handle_f4f" => &mut self.handle_f4f,
            "usp_handle_api" => &mut self.handle_api,
            "usp_disable_mmap" => &mut self.disable_mmap,
            "usp_dynamic_time_shift_buffer_depth" => &mut self.dynamic_time_shift_buffer_depth,
            "origin_live_auto_create" => &mut self.live_auto_create,
            _ => return None,
        })
    }

    fn switch_value(&self, name: &str) -> Option<bool> {
        match name {
            "usp_handle_ism" => self.handle_ism,
            "usp_handle_f4f" => self.handle_f4f,
            "usp_handle_api" => self.handle_api,
            _ => None,
        }
    }

    fn s3_mut(&mut self, name: &str) -> Option<&mut Option<Setting<String>>> {
        Some(match name {
            "s3_access_key" => &mut self.s3.access_key,
            "s3_secret_key" => &mut self.s3.secret_key,
            "s3_region" => &mut self.s3.region,
            "s3_security_token" => &mut self.s3.security_token,
            _ => return None,
        })
    }

    /// The directive of this location that hands it to the packaging handler, if any.
    fn packaging_directive(&self) -> Option<&'static str> {
        HANDLER_SWITCHES
            .into_iter()
            .find(|s| self.switch_value(s) == Some(true))
            .or(self.proxy_pass.as_ref().map(|_| "ism_proxy_pass"))
    }

    /// Applies one directive of this location (every one but `origin_drm`, whose values the
    /// glue compiles; see [`check_drm_option`]). `args` excludes the directive name; the error
    /// is the message `nginx -t` prints (the glue adds the file:line).
    pub fn set(&mut self, name: &str, args: &[&str], at: Position) -> Result<(), String> {
        if let Some(slot) = self.switch_mut(name) {
            if slot.is_some() {
                return Err(duplicate(name));
            }
            let value = match args {
                [] => true,
                [v] => parse_switch(v).map_err(|e| invalid(name, v, &e.to_string()))?,
                _ => return Err(argument_count(name)),
            };
            *slot = Some(value);
            if value && HANDLER_SWITCHES.contains(&name) && self.status_endpoint.is_some() {
                return Err(both_handlers(name));
            }
            return Ok(());
        }
        if name == "origin_status" {
            if !args.is_empty() {
                return Err(argument_count(name));
            }
            if self.status_endpoint.is_some() {
                return Err(duplicate(name));
            }
            if let Some(other) = self.packaging_directive() {
                return Err(both_handlers(other));
            }
            self.status_endpoint = Some(true);
            return Ok(());
        }
        if name == "origin_status_map" {
            let mapping =
                StatusMapping::parse(args).map_err(|e| invalid(name, &args.join(" "), &e.0))?;
            let maps = self.status_map.get_or_insert_with(Vec::new);
            if maps
                .iter()
                .any(|m| m.from == mapping.from && m.tokens == mapping.tokens)
            {
                return Err(format!(
                    "\"{name}\" maps {} twice for the same tokens",
                    mapping.from
                ));
            }
            maps.push(mapping);
            return Ok(());
        }
        let [value] = args else {
            return Err(argument_count(name));
        };
        if name == "origin_static_root" {
            if self.static_root.is_some() {
                return Err(duplicate(name));
            }
            if !value.starts_with('/') {
                return Err(invalid(name, value, "expected an absolute path"));
            }
            self.static_root = Some(value.to_string());
            return Ok(());
        }
        if let Some((slot, limit)) = match name {
            "origin_live_max_tracks" => Some((
                &mut self.live_max_tracks,
                crate::live::limits::MAX_TRACKS_LIMIT,
            )),
            "origin_live_max_channels" => Some((
                &mut self.live_max_channels,
                crate::live::limits::MAX_CHANNELS_LIMIT,
            )),
            _ => None,
        } {
            if slot.is_some() {
                return Err(duplicate(name));
            }
            let n = value
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=limit).contains(n))
                .ok_or_else(|| invalid(name, value, &format!("expected 1 to {limit}")))?;
            *slot = Some(n);
            return Ok(());
        }
        if name == "origin_remote_ttl" {
            if self.remote_ttl.is_some() {
                return Err(duplicate(name));
            }
            let secs = parse_seconds(value).map_err(|e| invalid(name, value, &e.0))?;
            self.remote_ttl = Some(secs);
            return Ok(());
        }
        if name == "ism_proxy_pass" {
            if self.proxy_pass.is_some() {
                return Err(duplicate(name));
            }
            let url = ProxyPassUrl::parse(value).map_err(|e| invalid(name, value, &e.0))?;
            if self.status_endpoint.is_some() {
                return Err(both_handlers(name));
            }
            self.proxy_pass = Some(Setting { value: url, at });
            return Ok(());
        }
        let Some(slot) = self.s3_mut(name) else {
            return Err(format!("unknown directive \"{name}\""));
        };
        if slot.is_some() {
            return Err(duplicate(name));
        }
        let checked = if name == "s3_region" {
            validate_s3_region(value)
        } else {
            validate_s3_credential(value)
        };
        // Secrets are never echoed into logs.
        let shown = if name == "s3_region" { value } else { "…" };
        checked.map_err(|e| invalid(name, shown, &e.0))?;
        *slot = Some(Setting {
            value: value.to_string(),
            at,
        });
        Ok(())
    }

    /// The content handler directive `name`, just applied by [`LocationSettings::set`],
    /// gives the location, if it gives one: `ism_proxy_pass` alone makes a location hand its
    /// `.ism`, `.isml` and `.mp4` URLs to the module, as the reference module documents.
    pub fn handler_set_by(&self, name: &str) -> Option<ContentHandler> {
        match name {
            "origin_status" => Some(ContentHandler::StatusEndpoint),
            "ism_proxy_pass" => Some(ContentHandler::Packaging),
            _ if HANDLER_SWITCHES.contains(&name) && self.switch_value(name) == Some(true) => {
                Some(ContentHandler::Packaging)
            }
            _ => None,
        }
    }

    /// What live ingest into this merged location may do, its files reached under `files`
    /// (the location's `disable_symlinks`, which the glue evaluates per request).
    pub fn ingest_policy(
        &self,
        files: crate::live::confined::OpenRules,
    ) -> crate::live::limits::IngestPolicy {
        use crate::live::limits::{DEFAULT_MAX_CHANNELS, DEFAULT_MAX_TRACKS};
        crate::live::limits::IngestPolicy {
            create: LocationSettings::on(self.live_auto_create),
            max_tracks: self.live_max_tracks.unwrap_or(DEFAULT_MAX_TRACKS),
            max_channels: self.live_max_channels.unwrap_or(DEFAULT_MAX_CHANNELS),
            files,
        }
    }

    /// Whether requests of this merged location may write live archives or publishing points
    /// (ingest, the Live API): such a location needs the thread pool those writes run on.
    /// Remote locations refuse both.
    pub fn may_write_archives(&self) -> bool {
        self.proxy_pass.is_none()
            && (LocationSettings::on(self.handle_ism) || LocationSettings::on(self.handle_api))
    }

    /// The content handler of a merged location (for the `limit_except` and `if` blocks
    /// inside it, which nginx gives no handler of their own).
    pub fn content_handler(&self) -> Option<ContentHandler> {
        let packages = [self.handle_ism, self.handle_f4f, self.handle_api]
            .into_iter()
            .any(LocationSettings::on)
            || self.proxy_pass.is_some();
        if packages {
            Some(ContentHandler::Packaging)
        } else if LocationSettings::on(self.status_endpoint) {
            Some(ContentHandler::StatusEndpoint)
        } else {
            None
        }
    }

    /// Inherits unset values from the enclosing level and checks the combination; the error
    /// names the directive's own position, not the end of the block merge runs at.
    pub fn merge(&mut self, prev: &LocationSettings) -> Result<(), (String, Position)> {
        // `usp_handle_ism off` beside `ism_proxy_pass` (both written here) asks for two
        // opposite things: the proxy hands the location's URLs to the module.
        if let (Some(false), Some(pass)) = (self.handle_ism, &self.proxy_pass) {
            return Err((
                "\"usp_handle_ism off\" and \"ism_proxy_pass\" in one location: \
                 \"ism_proxy_pass\" hands the location's .ism, .isml and .mp4 URLs to the module"
                    .into(),
                pass.at.clone(),
            ));
        }
        for (this, parent) in [
            (&mut self.handle_ism, prev.handle_ism),
            (&mut self.iss_pass_through, prev.iss_pass_through),
            (&mut self.prefer_static, prev.prefer_static),
            (&mut self.skip_rewrite, prev.skip_rewrite),
            (&mut self.handle_f4f, prev.handle_f4f),
            (&mut self.handle_api, prev.handle_api),
            (&mut self.disable_mmap, prev.disable_mmap),
            (
                &mut self.dynamic_time_shift_buffer_depth,
                prev.dynamic_time_shift_buffer_depth,
            ),
        ] {
            *this = Some(this.or(parent).unwrap_or(false));
        }
        if self.remote_ttl.is_none() {
            self.remote_ttl = prev.remote_ttl;
        }
        if self.static_root.is_none() {
            self.static_root = prev.static_root.clone();
        }
        // Only for the `limit_except` and `if` blocks inside the location (see
        // `content_handler`): nested named locations have handlers of their own.
        if self.status_endpoint.is_none() {
            self.status_endpoint = prev.status_endpoint;
        }
        // Like nginx's own list directives: a location that maps nothing inherits all maps.
        if self.status_map.is_none() {
            self.status_map = prev.status_map.clone();
        }
        // Off unless turned on, here or above: an open origin must not let strangers create
        // channels.
        self.live_auto_create = Some(
            self.live_auto_create
                .or(prev.live_auto_create)
                .unwrap_or(false),
        );
        self.live_max_tracks = Some(
            self.live_max_tracks
                .or(prev.live_max_tracks)
                .unwrap_or(crate::live::limits::DEFAULT_MAX_TRACKS),
        );
        self.live_max_channels = Some(
            self.live_max_channels
                .or(prev.live_max_channels)
                .unwrap_or(crate::live::limits::DEFAULT_MAX_CHANNELS),
        );
        // Like `proxy_pass`, `ism_proxy_pass` is not inherited: nginx's proxy module, which
        // does the reads, is configured in the location that names it and nowhere else.
        // S3 credentials travel as a set: a location that sets any of them does not inherit the
        // others, so keys from two places are never mixed into one signature.
        if !self.s3.any() {
            self.s3 = prev.s3.clone();
        }
        let s3 = &self.s3;
        match (&s3.access_key, &s3.secret_key) {
            (Some(a), None) => Err((
                "\"s3_access_key\" is set without \"s3_secret_key\"".into(),
                a.at.clone(),
            )),
            (None, Some(s)) => Err((
                "\"s3_secret_key\" is set without \"s3_access_key\"".into(),
                s.at.clone(),
            )),
            (None, None) => match &s3.security_token {
                Some(t) => Err((
                    "\"s3_security_token\" is set without \"s3_access_key\" and \"s3_secret_key\""
                        .into(),
                    t.at.clone(),
                )),
                None => Ok(()),
            },
            (Some(_), Some(_)) => Ok(()),
        }
    }
}

/// `origin_drm NAME VALUE`: NAME must be a content protection option of the `.ism`, set once
/// per level (`already` holds the names this level set before).
pub fn check_drm_option<'a>(
    name: &str,
    mut already: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    use crate::drm::{GROUP_OPTIONS, PLAYOUT_OPTIONS};
    if !GROUP_OPTIONS.contains(&name) && !PLAYOUT_OPTIONS.contains(&name) {
        return Err(format!(
            "unknown option \"{name}\" in \"origin_drm\" directive, expected one of {}",
            GROUP_OPTIONS
                .iter()
                .chain(PLAYOUT_OPTIONS.iter())
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if already.any(|o| o == name) {
        return Err(format!("\"origin_drm\" sets {name} twice"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize) -> Position {
        Position {
            file: "nginx.conf".into(),
            line,
        }
    }

    /// A location made of `directives` (name and arguments, as written).
    fn location(directives: &[&str]) -> Result<LocationSettings, String> {
        let mut l = LocationSettings::default();
        for (n, d) in directives.iter().enumerate() {
            let words: Vec<&str> = d.split_whitespace().collect();
            l.set(words[0], &words[1..], at(n + 1))?;
        }
        Ok(l)
    }

    fn merged(parent: &[&str], child: &[&str]) -> Result<LocationSettings, (String, Position)> {
        let mut top = location(parent).unwrap();
        top.merge(&LocationSettings::default())?;
        let mut l = location(child).unwrap();
        l.merge(&top)?;
        Ok(l)
    }

    #[test]
    fn switches_take_on_off_or_nothing_once() {
        let l = location(&[
            "usp_handle_ism",
            "usp_handle_f4f off",
            "usp_prefer_static ON",
        ])
        .unwrap();
        assert_eq!(
            (l.handle_ism, l.handle_f4f, l.prefer_static),
            (Some(true), Some(false), Some(true))
        );
        assert_eq!(
            location(&["usp_handle_ism", "usp_handle_ism"]).unwrap_err(),
            "\"usp_handle_ism\" directive is duplicate"
        );
        assert_eq!(
            location(&["usp_disable_mmap yes"]).unwrap_err(),
            "invalid value \"yes\" in \"usp_disable_mmap\" directive, it must be \"on\" or \"off\""
        );
        assert_eq!(
            location(&["usp_skip_rewrite on off"]).unwrap_err(),
            "invalid number of arguments in \"usp_skip_rewrite\" directive"
        );
        assert_eq!(
            location(&["usp_handle_everything on"]).unwrap_err(),
            "unknown directive \"usp_handle_everything\""
        );
    }

    #[test]
    fn only_local_packaging_and_api_locations_write_archives() {
        let writes = |d: &[&str]| merged(&[], d).unwrap().may_write_archives();
        assert!(writes(&["usp_handle_ism"]));
        assert!(writes(&["usp_handle_api"]));
        assert!(!writes(&["usp_handle_f4f"]));
        assert!(!writes(&["ism_proxy_pass http://backend/"]));
        assert!(!writes(&[
            "usp_handle_ism",
            "ism_proxy_pass http://backend/"
        ]));
        assert!(!writes(&["origin_status"]));
    }

    #[test]
    fn values_are_checked() {
        let l = location(&["origin_remote_ttl 5m", "origin_static_root /srv/static"]).unwrap();
        assert_eq!(l.remote_ttl, Some(300));
        assert_eq!(l.static_root.as_deref(), Some("/srv/static"));
        assert!(location(&["origin_static_root static"])
            .unwrap_err()
            .contains("expected an absolute path"));
        assert!(location(&["origin_remote_ttl soon"])
            .unwrap_err()
            .starts_with("invalid value \"soon\" in \"origin_remote_ttl\""));
        assert!(location(&["ism_proxy_pass ftp://x/"])
            .unwrap_err()
            .contains("http:// or https://"));
        assert_eq!(
            location(&["ism_proxy_pass http://a/", "ism_proxy_pass http://b/"]).unwrap_err(),
            "\"ism_proxy_pass\" directive is duplicate"
        );
        assert_eq!(
            location(&["origin_remote_ttl 1 2"]).unwrap_err(),
            "invalid number of arguments in \"origin_remote_ttl\" directive"
        );
    }

    #[test]
    fn live_limits_are_numbers_in_range() {
        let l = location(&["origin_live_max_tracks 255", "origin_live_max_channels 1"]).unwrap();
        assert_eq!(
            (l.live_max_tracks, l.live_max_channels),
            (Some(255), Some(1))
        );
        for bad in [
            "origin_live_max_tracks 0",
            "origin_live_max_tracks 256",
            "origin_live_max_tracks many",
            "origin_live_max_channels -1",
            "origin_live_max_channels 100001",
        ] {
            let e = location(&[bad]).unwrap_err();
            assert!(e.starts_with("invalid value"), "{e}");
            assert!(e.contains("expected 1 to"), "{e}");
        }
        let policy = merged(&["origin_live_max_tracks 4"], &["origin_live_auto_create"])
            .unwrap()
            .ingest_policy(Default::default());
        assert_eq!(
            (policy.create, policy.max_tracks, policy.max_channels),
            (true, 4, 100)
        );
        let policy = merged(&[], &["usp_handle_ism"])
            .unwrap()
            .ingest_policy(Default::default());
        assert_eq!(policy, crate::live::limits::IngestPolicy::default());
        assert_eq!(
            location(&["origin_live_max_tracks 2", "origin_live_max_tracks 3"]).unwrap_err(),
            "\"origin_live_max_tracks\" directive is duplicate"
        );
    }

    #[test]
    fn s3_secrets_are_never_echoed() {
        let e = location(&["s3_secret_key has\u{7f}control"]).unwrap_err();
        assert!(
            e.starts_with("invalid value \"…\" in \"s3_secret_key\""),
            "{e}"
        );
        let e = location(&["s3_region US"]).unwrap_err();
        assert!(
            e.starts_with("invalid value \"US\" in \"s3_region\""),
            "{e}"
        );
        assert_eq!(
            location(&["s3_region eu-west-1", "s3_region eu-west-2"]).unwrap_err(),
            "\"s3_region\" directive is duplicate"
        );
    }

    #[test]
    fn s3_credentials_travel_as_a_set() {
        let parent = ["s3_access_key A", "s3_secret_key S", "s3_region eu-west-1"];
        // Nothing set here: all of them inherited.
        let l = merged(&parent, &["usp_handle_ism"]).unwrap();
        assert_eq!(l.s3.credentials(), Some(("A", "S")));
        assert_eq!(l.s3.region.unwrap().value, "eu-west-1");
        // One set here: none inherited, so the key without its secret is refused, naming
        // the key's own line.
        let (e, pos) = merged(&parent, &["usp_handle_ism", "s3_access_key B"]).unwrap_err();
        assert_eq!(e, "\"s3_access_key\" is set without \"s3_secret_key\"");
        assert_eq!(pos, at(2));
        let (e, _) = merged(&[], &["s3_secret_key S"]).unwrap_err();
        assert_eq!(e, "\"s3_secret_key\" is set without \"s3_access_key\"");
        let (e, pos) = merged(&[], &["s3_security_token T"]).unwrap_err();
        assert!(e.starts_with("\"s3_security_token\" is set without"), "{e}");
        assert_eq!(pos, at(1));
        let l = merged(&[], &["s3_access_key A", "s3_secret_key S"]).unwrap();
        assert!(l.s3.region.is_none());
    }

    #[test]
    fn merge_inherits_what_is_not_set_here() {
        let l = merged(
            &[
                "usp_handle_f4f",
                "origin_remote_ttl 10",
                "origin_status_map 404 410",
            ],
            &["usp_handle_ism"],
        )
        .unwrap();
        assert_eq!(l.handle_f4f, Some(true));
        assert_eq!(l.prefer_static, Some(false));
        assert_eq!(l.remote_ttl, Some(10));
        assert_eq!(l.status_map.as_ref().map(Vec::len), Some(1));
        // Live ingest's safe defaults: no channel made by a push, 32 tracks, 100 channels.
        assert_eq!(l.live_auto_create, Some(false));
        assert_eq!(l.live_max_tracks, Some(32));
        assert_eq!(l.live_max_channels, Some(100));
        // A level that maps anything inherits no maps; on stays on, limits are inherited.
        let l = merged(
            &[
                "origin_status_map 404 410",
                "origin_live_auto_create on",
                "origin_live_max_tracks 8",
            ],
            &["origin_status_map 502 503", "usp_handle_f4f off"],
        )
        .unwrap();
        assert_eq!(l.status_map.unwrap()[0].from, 502);
        assert_eq!(l.live_auto_create, Some(true));
        assert_eq!(l.live_max_tracks, Some(8));
        // ism_proxy_pass is the location's own, like proxy_pass.
        let l = merged(&["ism_proxy_pass http://storage/"], &["usp_handle_ism"]).unwrap();
        assert!(l.proxy_pass.is_none());
    }

    #[test]
    fn status_maps_are_checked_and_not_repeated() {
        let l = location(&[
            "origin_status_map 412 204 FRAGMENT_NOT_AVAILABLE",
            "origin_status_map 412 404",
        ])
        .unwrap();
        assert_eq!(l.status_map.unwrap().len(), 2);
        assert_eq!(
            location(&["origin_status_map 404 410", "origin_status_map 404 451"]).unwrap_err(),
            "\"origin_status_map\" maps 404 twice for the same tokens"
        );
        let e = location(&["origin_status_map 502 444"]).unwrap_err();
        assert!(
            e.starts_with("invalid value \"502 444\" in \"origin_status_map\" directive, "),
            "{e}"
        );
    }

    #[test]
    fn a_location_packages_or_reports() {
        for packaging in ["usp_handle_ism", "usp_handle_f4f", "usp_handle_api"] {
            assert_eq!(
                location(&["origin_status", packaging]).unwrap_err(),
                both_handlers(packaging)
            );
            assert_eq!(
                location(&[packaging, "origin_status"]).unwrap_err(),
                both_handlers(packaging)
            );
        }
        assert_eq!(
            location(&["ism_proxy_pass http://s/", "origin_status"]).unwrap_err(),
            both_handlers("ism_proxy_pass")
        );
        assert_eq!(
            location(&["origin_status", "ism_proxy_pass http://s/"]).unwrap_err(),
            both_handlers("ism_proxy_pass")
        );
        // A switch turned off is no handler.
        assert!(location(&["usp_handle_ism off", "origin_status"]).is_ok());
        assert_eq!(
            location(&["origin_status", "origin_status"]).unwrap_err(),
            "\"origin_status\" directive is duplicate"
        );
    }

    #[test]
    fn ism_proxy_pass_alone_hands_the_location_to_the_module() {
        // The reference module's own snippet: `location ^~ /video/proxy/ { ism_proxy_pass
        // http://other-server/; }`.
        let l = location(&["ism_proxy_pass http://other-server/"]).unwrap();
        assert_eq!(
            l.handler_set_by("ism_proxy_pass"),
            Some(ContentHandler::Packaging)
        );
        let mut l = l;
        l.merge(&LocationSettings::default()).unwrap();
        assert_eq!(l.content_handler(), Some(ContentHandler::Packaging));
        // usp_handle_ism beside it is still accepted.
        let l = merged(
            &[],
            &["usp_handle_ism", "ism_proxy_pass http://other-server/"],
        )
        .unwrap();
        assert_eq!(l.content_handler(), Some(ContentHandler::Packaging));
        // An explicit "off" beside it contradicts it, and says so at the proxy's line.
        let (e, pos) = merged(
            &[],
            &["usp_handle_ism off", "ism_proxy_pass http://other-server/"],
        )
        .unwrap_err();
        assert!(
            e.starts_with("\"usp_handle_ism off\" and \"ism_proxy_pass\""),
            "{e}"
        );
        assert_eq!(pos, at(2));
        // Off inherited from the server level is no contradiction.
        let l = merged(
            &["usp_handle_ism off"],
            &["ism_proxy_pass http://other-server/"],
        )
        .unwrap();
        assert_eq!(l.content_handler(), Some(ContentHandler::Packaging));
    }

    #[test]
    fn handlers_follow_the_switches() {
        let l = location(&["usp_handle_f4f", "usp_handle_api off"]).unwrap();
        assert_eq!(
            l.handler_set_by("usp_handle_f4f"),
            Some(ContentHandler::Packaging)
        );
        assert_eq!(l.handler_set_by("usp_handle_api"), None);
        assert_eq!(l.handler_set_by("usp_prefer_static"), None);
        let l = location(&["origin_status"]).unwrap();
        assert_eq!(
            l.handler_set_by("origin_status"),
            Some(ContentHandler::StatusEndpoint)
        );
        let mut l = l;
        l.merge(&LocationSettings::default()).unwrap();
        assert_eq!(l.content_handler(), Some(ContentHandler::StatusEndpoint));
        let mut none = location(&["usp_handle_ism off", "usp_prefer_static"]).unwrap();
        none.merge(&LocationSettings::default()).unwrap();
        assert_eq!(none.content_handler(), None);
    }

    #[test]
    fn drm_options_are_known_and_set_once() {
        assert!(check_drm_option("iss.key", ["hls.key"].into_iter()).is_ok());
        assert!(check_drm_option("hls_playout", std::iter::empty()).is_ok());
        let e = check_drm_option("iss.keys", std::iter::empty()).unwrap_err();
        assert!(e.starts_with(
            "unknown option \"iss.keys\" in \"origin_drm\" directive, expected one of"
        ));
        assert_eq!(
            check_drm_option("iss.key", ["iss.key"].into_iter()).unwrap_err(),
            "\"origin_drm\" sets iss.key twice"
        );
    }
}
