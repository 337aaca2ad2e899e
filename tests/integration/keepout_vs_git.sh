#!/usr/bin/env bash
# Compares dim's keep-out matcher with `git check-ignore`, the reference for the
# gitignore semantics dim promises, on many pattern sets and awkward file names.
# Usage: keepout_vs_git.sh PATH/TO/keepout_probe
set -euo pipefail

probe=${1:?usage: keepout_vs_git.sh PATH/TO/keepout_probe}
command -v git >/dev/null || { echo "SKIP: git not installed"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keepout_vs_git.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
repo=$tmp/repo

# Only the .gitignore under test may speak: no user, system or XDG ignore files.
export HOME=$tmp XDG_CONFIG_HOME=$tmp/xdg GIT_CONFIG_NOSYSTEM=1 LC_ALL=C
git init -q "$repo"
: >"$repo/.git/info/exclude"

# A small image. Entries ending in '/' are directories; the rest are files.
paths=(
  etc/ etc/hostname etc/hosts etc/fstab etc/machine-id etc/hostname.d/ etc/hostname.d/x
  etc/ssh/ etc/ssh/ssh_config etc/ssh/sshd_config etc/ssh/ssh_host_rsa_key
  etc/ssh/ssh_host_rsa_key.pub etc/ssh/ssh_host_ed25519_key etc/ssh/sshd_config.d/
  etc/ssh/sshd_config.d/local.conf etc/ssl/private/a.pem etc/ssl/certs/b.pem
  etc/ssl/certs/c.crt etc/ssl/certs/sub/d.pem
  var/ var/log/ var/log/syslog var/log/apt/history.log var/log/journal/ var/lib/dpkg/status
  var/tmp/ var/cache/x.log
  home/alice/.ssh/authorized_keys home/alice/notes.txt home/alice/.config/app.conf
  root/.bash_history root/ssh/known
  a/b a/x/b a/x/y/b a/c/b/ a/bb
  data/foo/bar data/foo/baz/ bar/foo/ foo hostname
  tmp/1.log tmp/22.log tmp/abc.log tmp/Abc.log tmp/-dash tmp/]bracket tmp/^caret tmp/!bang
  tmp/.hidden tmp/a-b tmp/[x tmp/:colon tmp/e tmp/d
  'srv/a[1]/file' 'srv/star*name' 'srv/q?mark' 'srv/back\slash' 'srv/!important'
  'srv/#hash' 'srv/ lead' 'srv/trail ' $'srv/new\nline' $'srv/tab\there'
  $'srv/\xff\xfe' $'srv/caf\xc3\xa9' srv/UPPER srv/upper srv/a.b.c
  srv/x/y/z/deep.txt srv/x/y/z/ srv/x/deep.txt
)
rel=()
for p in "${paths[@]}"; do
  if [[ $p == */ ]]; then
    mkdir -p "$repo/$p"
    rel+=("${p%/}")
  else
    [[ $p == */* ]] && mkdir -p "$repo/${p%/*}"
    : >"$repo/$p"
    rel+=("$p")
  fi
done
printf '%s\0' "${rel[@]}" >"$tmp/paths"

# Readable records for failure reports: one line per path.
records() { xargs -0 -n4 printf '%s | %s | %s | %s\n'; }

failures=0 cases=0
# check NAME PATTERN...: the verdict and deciding rule for every path must agree.
check() {
  local name=$1
  shift
  cases=$((cases + 1))
  printf '%s\n' "$@" >"$repo/.gitignore"
  (cd "$repo" && git check-ignore --no-index -z -v -n --stdin <"$tmp/paths" >"$tmp/git.out") ||
    [[ $? == 1 ]]  # 1: nothing ignored
  "$probe" "$repo/.gitignore" "$repo" <"$tmp/paths" >"$tmp/dim.out"
  if ! cmp -s "$tmp/git.out" "$tmp/dim.out"; then
    failures=$((failures + 1))
    echo "FAIL: $name: patterns: $*"
    diff <(records <"$tmp/git.out") <(records <"$tmp/dim.out") | sed 's/^</  git:/; s/^>/  dim:/' |
      grep -v '^---' || true
  fi
}

check admin /etc/hostname '/etc/ssh/ssh_host_*' /etc/fstab /var/log/ /etc/machine-id
check suffix '*.pem' '*.log'
check unanchored hostname ssh
check anchored_top /hostname /foo
check anchored_no_leading_slash etc/ssh etc/hostname.d/x
check dir_only ssh/ ssh_config/ foo/ hostname/
check dir_only_anchored /etc/ssh/ etc/ssh/sshd_config.d/
check reinclude '/etc/ssh/*' '!/etc/ssh/ssh_config'
check reinclude_inside_kept_dir /etc/ssh/ '!/etc/ssh/ssh_config'
check reinclude_dir_inside_kept_dir /var/ '!/var/log/'
check reinclude_dir_then_exclude '/var/*' '!/var/log/' /var/log/apt/
check last_match_wins '*.pem' '!/etc/ssl/certs/*.pem' /etc/ssl/certs/b.pem
check negation_first '!*.log' '*.log'
check reinclude_everything '/etc/*' '!*'
check starstar_leading '**/b' '**/deep.txt'
check starstar_trailing 'a/**' 'etc/ssl/**'
check starstar_middle 'a/**/b' 'srv/**/deep.txt' 'etc/**/*.pem'
check starstar_repeated 'a/**/**/b'
check starstar_alone '**'
check starstar_root '/**' '!/etc/**'
check starstar_dir 'etc/**/' '**/'
check starstar_in_name 'foo**' '**bar' 'a/**b' 'var/l**'
check star_alone '*'
check star_root '/*' '!/etc'
check star_dirs '*/' '/*/ssh/'
check star_depth '*/*' '!*/*/*'
check question '/tmp/?.log' '/tmp/??.log' '?'
check class_digit '/tmp/[0-9].log' '/tmp/[0-9][0-9].log'
check class_negated '/tmp/[!0-9]*.log' '/tmp/[^a]*'
check class_bracket_first '[]]*' '[!]]*' 'tmp/[[]x'
check class_dash '[a-]*' '[-a]*' 'tmp/[a-c-e]' 'tmp/[!-]*'
check class_named '[[:upper:]]*' '[[:digit:]][[:digit:]].log' 'tmp/[[:punct:]]*'
check class_named_more 'tmp/[[:alpha:]][[:alnum:]]*' '[[:lower:]][[:xdigit:]]*' '[[:space:]]*'
check class_colon_literal 'tmp/[[:x]*' 'tmp/[:]*'
check class_escape 'tmp/[\]]*' 'tmp/[\!]*' 'tmp/[a\-z]*'
check escapes '\!important' '\#hash' 'srv/a\[1\]' 'star\*name' 'q\?mark' 'back\\slash'
check escaped_space 'trail\ ' 'srv/\ lead'
check leading_space ' lead'
check escaped_plain '\h\o\s\t\s' 'e\tc/ssh/ssh_config'
check non_utf8 $'srv/\xff*' $'caf\xc3\xa9' $'\xff\xfe'
check newline_in_name 'new*line' 'srv/new?line'
check tab_in_name 'tab*'
check case_sensitive upper '/srv/U*'
check hidden '.*' '!.config/'
check dots '*.*.*' 'a.b*'
check bang_inside 'tmp/!*' 'tmp/*!*'
check keep_dir_contents '/etc/ssh/*' '!/etc/ssh/sshd_config.d/' '/etc/ssh/sshd_config.d/*'
check deep_negation '/etc/' '!/etc/ssh/' '!/etc/ssh/ssh_config'
check many_rules /etc/hostname /etc/hosts '*.log' '!/var/log/syslog' '/var/log/*' '!/var/log/apt/' \
  'home/*/.ssh/' 'srv/x/' '!srv/x/y/' '*.pem' '!a.pem' '/etc/ssl/private/'

echo "keepout_vs_git: $cases cases, ${#rel[@]} paths each, $failures failed"
[[ $failures == 0 ]]
