# stsd hook for zsh: add `eval "$(stsd hook zsh)"` to ~/.zshrc.
# Each prompt (and each cd) decides in pure zsh whether anything changed; only a transition runs the
# client, once. Names are all `_stsd_*`; `emulate -L zsh` keeps the user's options (nounset, errexit,
# ksh arrays, ...) out of the hook. `stsd hook zsh` sets _stsd_python, _stsd_root and _stsd_entry above.

zmodload zsh/datetime 2>/dev/null  # $EPOCHSECONDS without running `date`

_stsd_hook() {
    local previous_exit=$?
    emulate -L zsh
    local dir=${PWD-} file=''
    _stsd_flush
    if [[ $dir == "${_stsd_pwd-}" && ! -f $dir/.stsd.toml && ( -z ${_stsd_file-} || -f ${_stsd_file-} ) ]]; then
        # Same directory, no project file appeared in it and the loaded one is still there: skip the walk.
        file=${_stsd_file-}
    else
        # The governing project file: nearest .stsd.toml walking up from $PWD, with builtin tests only.
        typeset -g _stsd_pwd=$dir
        [[ $dir == / ]] && dir=''
        while true; do
            if [[ -f $dir/.stsd.toml ]]; then
                file=$dir/.stsd.toml
                break
            fi
            [[ -n $dir ]] || break
            dir=${dir%/*}
        done
    fi

    # Another project (or none), or a state this shell did not write (a child shell, `exec zsh`).
    if [[ $file != "${_stsd_file-}" || ${__STSD_STATE-} != "${_stsd_state-}" ]]; then
        if [[ -z $file && ${__STSD_STATE-} == "${_stsd_state-}" ]]; then
            _stsd_leave ''  # out of every project: restoring needs no client
        else
            _stsd_transition "$file"
        fi
    elif [[ -n $file ]]; then
        # An edited project file, a trust decision since we last asked, or a due renewal.
        if [[ $file -nt ${_stsd_stamp-} || ( -n ${_stsd_watch-} && ${_stsd_watch} -nt ${_stsd_stamp-} ) ]] ||
            (( ${_stsd_refresh_at:-0} > 0 && EPOCHSECONDS >= ${_stsd_refresh_at:-0} )); then
            _stsd_transition "$file"
        fi
    fi
    typeset -g _stsd_first=0
    return previous_exit
}

_stsd_transition() {
    emulate -L zsh
    local file=$1 code
    if [[ ! -x ${_stsd_python-} ]]; then
        # The pinned interpreter is gone (uninstalled?): say so once, and never keep a project's keys.
        if [[ ${_stsd_notice-} != missing ]]; then
            print -ru2 -- "stsd: ${_stsd_python-} is missing; reinstall stsd or run: eval \"\$(stsd hook zsh)\""
        fi
        typeset -g _stsd_notice=missing
        [[ $file == "${_stsd_file-}" ]] || _stsd_leave "$file"
        return 0
    fi
    # Under powerlevel10k's instant prompt any output is "console output during zsh initialization": the
    # client then hands its line over in _stsd_held, shown once the instant prompt is over.
    local hold=0
    (( ${+__p9k_instant_prompt_active} )) && hold=1
    if code=$(__STSD_FILE=$file __STSD_SHOWN=${_stsd_notice-} __STSD_PID=$$ __STSD_FIRST=${_stsd_first-1} \
        __STSD_HOLD=$hold "$_stsd_python" -I -S -c "${_stsd_entry-}" "${_stsd_root-}" zsh); then
        eval "$code"
        _stsd_flush
        typeset -g _stsd_file=$file _stsd_state=${__STSD_STATE-}
    elif [[ $file != "${_stsd_file-}" ]]; then
        _stsd_leave "$file"  # the client failed: still never keep the previous project's credentials
    fi
}

# A line held back during powerlevel10k's instant prompt, shown as soon as that is over.
_stsd_flush() {
    [[ -n ${_stsd_held-} ]] && (( ! ${+__p9k_instant_prompt_active} )) || return 0
    print -ru2 -- "$_stsd_held"
    typeset -g _stsd_held=''
}

# Just before a command runs: the same checks as at a prompt, so a command typed at a prompt drawn before a
# renewal was due still gets fresh credentials. No process unless something is due.
_stsd_preexec() {
    _stsd_hook
}

# Restore what the loaded project replaced, with the code the client left for it (no process).
_stsd_leave() {
    emulate -L zsh
    eval "${_stsd_unload-}"
    if [[ -n ${_stsd_name-} && ${STSD_QUIET:-0} == 0 ]]; then
        print -ru2 -- "stsd: unloaded $_stsd_name"
    fi
    typeset -g _stsd_unload='' _stsd_name='' _stsd_refresh_at=0
    # A new project may have new problems to report; a missing installation stays reported.
    [[ ${_stsd_notice-} == missing ]] || typeset -g _stsd_notice=''
    typeset -g _stsd_watch=''
    typeset -g _stsd_file=$1 _stsd_state=${__STSD_STATE-}
}

# precmd for every prompt (first, so prompts built in later precmd functions see the current project),
# chpwd so `cd project && aws ...` already has the credentials, preexec for a command typed at an old
# prompt. The arrays ignore a second install (-U keeps them unique) and leave oh-my-zsh/p10k hooks be.
() {
    emulate -L zsh
    autoload -Uz add-zsh-hook
    typeset -gaU precmd_functions chpwd_functions preexec_functions
    precmd_functions=(_stsd_hook $precmd_functions)
    chpwd_functions=(_stsd_hook $chpwd_functions)
    add-zsh-hook preexec _stsd_preexec
}
