# stsd hook for bash: add `eval "$(stsd hook bash)"` to ~/.bashrc.
# Each prompt decides in pure bash whether anything changed (same directory, same project, nothing due);
# only a transition runs the client, once, and evaluates what it prints. Names are all `_stsd_*`; the
# hook's temporaries are local. `stsd hook bash` sets _stsd_python, _stsd_root and _stsd_entry above.

_stsd_hook() {
    local previous_exit=$? dir=${PWD-} file=''
    # bash-preexec loaded after this hook (starship, atuin): move to its arrays, once.
    [[ ${_stsd_preexec_ready-} == 1 || -z ${bash_preexec_imported-}${__bp_imported-} ]] || _stsd_use_bash_preexec
    if [[ $dir == "${_stsd_pwd-}" && ! -f $dir/.stsd.toml && (-z ${_stsd_file-} || -f ${_stsd_file-}) ]]; then
        # Same directory, no project file appeared in it and the loaded one is still there: skip the walk.
        file=${_stsd_file-}
    else
        # The governing project file: nearest .stsd.toml walking up from $PWD, with builtin tests only.
        _stsd_pwd=$dir
        [[ $dir == / ]] && dir=''
        while :; do
            if [[ -f $dir/.stsd.toml ]]; then
                file=$dir/.stsd.toml
                break
            fi
            [[ -n $dir ]] || break
            dir=${dir%/*}
        done
    fi

    # Another project (or none), or a state this shell did not write (a child shell, `exec bash`).
    if [[ $file != "${_stsd_file-}" || ${__STSD_STATE-} != "${_stsd_state-}" ]]; then
        if [[ -z $file && ${__STSD_STATE-} == "${_stsd_state-}" ]]; then
            _stsd_leave ''  # out of every project: restoring needs no client
        else
            _stsd_transition "$file"
        fi
    elif [[ -n $file ]]; then
        # An edited project file, a trust decision since we last asked, or a due renewal.
        if [[ $file -nt ${_stsd_stamp-} || (-n ${_stsd_watch-} && ${_stsd_watch} -nt ${_stsd_stamp-}) ]] ||
            ((${_stsd_refresh_at:-0} > 0 && ${EPOCHSECONDS:-0} >= ${_stsd_refresh_at:-0})); then
            _stsd_transition "$file"
        fi
    fi
    _stsd_first=0
    return "$previous_exit"
}

_stsd_transition() {
    local file=$1 code
    if [[ ! -x ${_stsd_python-} ]]; then
        # The pinned interpreter is gone (uninstalled?): say so once, and never keep a project's keys.
        if [[ ${_stsd_notice-} != missing ]]; then
            # shellcheck disable=SC2016 # the command is shown to the user, not run
            printf 'stsd: %s is missing; reinstall stsd or run: eval "$(stsd hook bash)"\n' "${_stsd_python-}" >&2
        fi
        _stsd_notice=missing
        [[ $file == "${_stsd_file-}" ]] || _stsd_leave "$file"
        return 0
    fi
    if code=$(__STSD_FILE=$file __STSD_SHOWN=${_stsd_notice-} __STSD_PID=$$ __STSD_FIRST=${_stsd_first-1} \
        "$_stsd_python" -I -S -c "${_stsd_entry-}" "${_stsd_root-}" bash); then
        eval "$code"
        _stsd_file=$file
        _stsd_state=${__STSD_STATE-}
    elif [[ $file != "${_stsd_file-}" ]]; then
        _stsd_leave "$file"  # the client failed: still never keep the previous project's credentials
    fi
}

# Restore what the loaded project replaced, with the code the client left for it (no process).
_stsd_leave() {
    eval "${_stsd_unload-}"
    if [[ -n ${_stsd_name-} && ${STSD_QUIET:-0} == 0 ]]; then
        printf 'stsd: unloaded %s\n' "$_stsd_name" >&2
    fi
    _stsd_unload='' _stsd_name='' _stsd_refresh_at=0
    # A new project may have new problems to report; a missing installation stays reported.
    [[ ${_stsd_notice-} == missing ]] || _stsd_notice=''
    _stsd_watch=''
    _stsd_file=$1
    _stsd_state=${__STSD_STATE-}
}

# Just before a command runs (bash-preexec only): the same checks as at a prompt, so a command typed at a
# prompt drawn before a renewal was due still gets fresh credentials. No process unless something is due.
_stsd_preexec() {
    _stsd_hook
}

# With bash-preexec, stsd goes first in precmd_functions (prompts built there see the current project)
# and into preexec_functions. Never a DEBUG trap of our own (bash-preexec owns it) nor PS0 (a subshell).
_stsd_use_bash_preexec() {
    _stsd_preexec_ready=1
    local entry
    for entry in ${precmd_functions[@]+"${precmd_functions[@]}"}; do
        [[ $entry == _stsd_hook ]] && return 0
    done
    precmd_functions=(_stsd_hook ${precmd_functions[@]+"${precmd_functions[@]}"})
    preexec_functions+=(_stsd_preexec)
}

# Install once, however often the rc file is sourced; keep every existing PROMPT_COMMAND entry.
_stsd_install() {
    local entry
    if [[ -n ${bash_preexec_imported-}${__bp_imported-} ]]; then
        _stsd_use_bash_preexec
        return 0
    fi
    for entry in ${PROMPT_COMMAND[@]+"${PROMPT_COMMAND[@]}"}; do
        [[ $entry == *_stsd_hook* ]] && return 0
    done
    # bash 5.1+ runs every element of an array PROMPT_COMMAND, each with the user's PIPESTATUS (a string
    # "_stsd_hook;theirs" would show theirs ours): use the array form there, turning a string into one
    # element. Older bash runs only the first element: a string it stays.
    if ((BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1))); then
        PROMPT_COMMAND=(_stsd_hook ${PROMPT_COMMAND[@]+"${PROMPT_COMMAND[@]}"})
    else
        # shellcheck disable=SC2128,SC2178 # here PROMPT_COMMAND is a string (or an array bash runs [0] of)
        PROMPT_COMMAND="_stsd_hook${PROMPT_COMMAND:+;$PROMPT_COMMAND}"
    fi
}
_stsd_install
unset -f _stsd_install
