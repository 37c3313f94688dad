# bash completion for volcli: commands, flags, and the names of policies,
# volumes, snapshots, trash entries and tokens, which volcli asks volmaster
# for (at most 2 seconds; nothing if it does not answer).
# Installed as /usr/share/bash-completion/completions/volcli by make install;
# to try it: source <(volcli completion bash)

_volcli() {
	local cur=${COMP_WORDS[COMP_CWORD]} word line
	# The words so far are run as they stand (never evaluated), with
	# volcli's completion flag last.
	local -a req=("${COMP_WORDS[@]:0:COMP_CWORD}")
	for word in "${req[@]}"; do
		# After "--" every word is an argument: leave it to bash.
		[[ $word == -- ]] && return 0
	done
	[[ $cur == -* ]] && req+=("$cur")
	COMPREPLY=()
	while IFS= read -r line; do
		[[ $line == "$cur"* ]] && COMPREPLY+=("$line")
	done < <("${req[@]}" --generate-bash-completion 2>/dev/null)
	# A policy offered as "NAME/" for a new volume goes on without a space.
	if ((${#COMPREPLY[@]} == 1)) && [[ ${COMPREPLY[0]} == */ ]]; then
		compopt -o nospace 2>/dev/null
	fi
	return 0
}

complete -o default -F _volcli volcli
