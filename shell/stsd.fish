# stsd hook for fish: add `stsd hook fish | source` to ~/.config/fish/config.fish.
# Each prompt (and each cd) decides with fish builtins whether anything changed; only a transition runs
# the client, once. Names are all `_stsd_*`. fish has no clock variable, so the client gives the due
# time of a renewal as the mtime of a file, and `path mtime --relative` compares it with now.
# `stsd hook fish` sets _stsd_python, _stsd_root and _stsd_entry above.

function _stsd_hook
    set -l dir $PWD
    set -l file ''
    if test "$dir" = "$_stsd_pwd" -a ! -f "$dir/.stsd.toml"; and test -z "$_stsd_file" -o -f "$_stsd_file"
        # Same directory, no project file appeared in it and the loaded one is still there: skip the walk.
        set file $_stsd_file
    else
        # The governing project file: nearest .stsd.toml walking up from $PWD, with builtins only.
        set -g _stsd_pwd $dir
        while true
            set -l candidate $dir/.stsd.toml
            test "$dir" = / && set candidate /.stsd.toml
            if test -f $candidate
                set file $candidate
                break
            end
            test "$dir" = / -o -z "$dir" && break
            set dir (path dirname -- $dir)
        end
    end

    # Another project (or none), or a state this shell did not write (a child shell, `exec fish`).
    if test "$file" != "$_stsd_file" -o "$__STSD_STATE" != "$_stsd_state"
        if test -z "$file" -a "$__STSD_STATE" = "$_stsd_state"
            _stsd_leave '' # out of every project: restoring needs no client
        else
            _stsd_transition $file
        end
    else if test -n "$file"
        # An edited project file, a trust decision since we last asked, or a due renewal.
        set -l overdue (path mtime --relative -- $_stsd_due 2>/dev/null)
        if test "$file" -nt "$_stsd_stamp"
            or test -n "$_stsd_watch" -a "$_stsd_watch" -nt "$_stsd_stamp"
            or test -n "$overdue" -a "$overdue" -ge 0 2>/dev/null
            _stsd_transition $file
        end
    end
    set -g _stsd_first 0
end

function _stsd_transition -a file
    if not test -x "$_stsd_python"
        # The pinned interpreter is gone (uninstalled?): say so once, and never keep a project's keys.
        if test "$_stsd_notice" != missing
            printf 'stsd: %s is missing; reinstall stsd or run: stsd hook fish | source\n' "$_stsd_python" >&2
        end
        set -g _stsd_notice missing
        test "$file" = "$_stsd_file"; or _stsd_leave $file
        return 0
    end
    set -q _stsd_first; or set -g _stsd_first 1
    __STSD_FILE=$file __STSD_SHOWN=$_stsd_notice __STSD_PID=$fish_pid __STSD_FIRST=$_stsd_first \
        $_stsd_python -I -S -c $_stsd_entry $_stsd_root fish | source
    if test $pipestatus[1] -eq 0
        set -g _stsd_file $file
        set -g _stsd_state $__STSD_STATE
    else if test "$file" != "$_stsd_file"
        _stsd_leave $file # the client failed: still never keep the previous project's credentials
    end
end

# Restore what the loaded project replaced, with the code the client left for it (no process).
function _stsd_leave -a file
    eval $_stsd_unload
    if test -n "$_stsd_name" -a "$STSD_QUIET" = 0 -o -n "$_stsd_name" -a -z "$STSD_QUIET"
        printf 'stsd: unloaded %s\n' $_stsd_name >&2
    end
    set -g _stsd_unload ''
    set -g _stsd_name ''
    # A new project may have new problems to report; a missing installation stays reported.
    test "$_stsd_notice" = missing; or set -g _stsd_notice ''
    set -g _stsd_watch ''
    set -g _stsd_file $file
    set -g _stsd_state $__STSD_STATE
end

# Event handlers, not a fish_prompt override; defining them again replaces them (installed once).
function _stsd_on_prompt --on-event fish_prompt
    _stsd_hook
end

function _stsd_on_cd --on-variable PWD
    _stsd_hook
end

# Just before a command runs: the same checks as at a prompt, so a command typed at a prompt drawn before a
# renewal was due still gets fresh credentials. No process unless something is due.
function _stsd_on_preexec --on-event fish_preexec
    _stsd_hook
end
