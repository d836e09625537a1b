# SPDX-License-Identifier: Apache-2.0
# bash completion for kbackend. tests/unit/test_docs.c checks it against the command table
# (`kbackend help`): every command, every flag of every usage line, get's resources, -o values.
# Install: `make install`, or copy to /usr/share/bash-completion/completions/kbackend.

_kbackend_policy_flags="--enable-backend --config --unix-dir --allow-endpoint --cluster-domain --clusterset-domain --service-endpoints"

_kbackend_flags()
{
	case "$1" in
	daemon)   echo "--cgroup --bpffs --state-dir --socket --watch-dir --kubernetes --kubeconfig --controller-name --no-status --metrics-addr --dns-server --dns-min-ttl
	                --dns-max-ttl --bridge-netns --bridge-buffer --bridge-mode --bridge-idle-timeout --no-inbound
	                --max-frontends --max-slots --max-endpoints --max-tracked-sockets $_kbackend_policy_flags
	                --verbose -v" ;;
	apply)    echo "-f --filename --replace --dry-run -o --output --socket --help $_kbackend_policy_flags" ;;
	delete)   echo "-f --filename -n --namespace --socket --help" ;;
	get)      echo "-n --namespace -A --all-namespaces -l --selector --field-selector -o --output --socket --help" ;;
	describe) echo "-n --namespace -o --output --socket --help" ;;
	validate) echo "-f --filename --each-file -o --output --help $_kbackend_policy_flags" ;;
	stats)    echo "-o --output -w --watch --socket --help" ;;
	status)   echo "-o --output --socket --help" ;;
	verify)   echo "-o --output --socket --help" ;;
	register) echo "--fd --pid --remove -o --output --socket --help" ;;
	dump-state) echo "--state-dir --help" ;;
	unload)   echo "--bpffs --socket --help" ;;
	esac
}

_kbackend()
{
	local cur prev cmd i
	local commands="daemon apply delete get describe validate stats status verify register dump-state unload version help"
	COMPREPLY=()
	cur="${COMP_WORDS[COMP_CWORD]}"
	prev="${COMP_WORDS[COMP_CWORD-1]}"

	cmd=""
	for ((i = 1; i < COMP_CWORD; i++)); do
		case "${COMP_WORDS[i]}" in
		-*) ;;
		*) cmd="${COMP_WORDS[i]}"; break ;;
		esac
	done
	if [[ -z "$cmd" ]]; then
		COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
		return 0
	fi

	# The argument of the previous flag.
	case "$prev" in
	-f|--filename|--config)
		if declare -F _filedir >/dev/null; then _filedir '@(yaml|yml)'; else COMPREPLY=($(compgen -f -- "$cur")); fi
		[[ "$prev" == -f || "$prev" == --filename ]] && [[ -z "$cur" || "$cur" == - ]] && COMPREPLY+=("-")
		return 0 ;;
	-o|--output)
		case "$cmd" in
		stats|status|verify|describe) COMPREPLY=($(compgen -W "json yaml" -- "$cur")) ;;
		register) COMPREPLY=($(compgen -W "json" -- "$cur")) ;;
		*) COMPREPLY=($(compgen -W "wide json yaml" -- "$cur")) ;;
		esac
		return 0 ;;
	--cgroup|--bpffs|--state-dir|--watch-dir|--unix-dir)
		COMPREPLY=($(compgen -d -- "$cur"))
		return 0 ;;
	--socket|--bridge-netns|--kubeconfig)
		COMPREPLY=($(compgen -f -- "$cur"))
		return 0 ;;
	--bridge-mode)
		COMPREPLY=($(compgen -W "copy splice" -- "$cur"))
		return 0 ;;
	--service-endpoints)
		COMPREPLY=($(compgen -W "auto slices dns" -- "$cur"))
		return 0 ;;
	-n|--namespace|--allow-endpoint|--cluster-domain|--clusterset-domain|--metrics-addr|--dns-server|--dns-min-ttl|--dns-max-ttl|--bridge-buffer|--bridge-idle-timeout|--fd|--pid|\
	--max-frontends|--max-slots|--max-endpoints|--max-tracked-sockets|--controller-name)
		return 0 ;;
	esac

	if [[ "$cur" == -* ]]; then
		COMPREPLY=($(compgen -W "$(_kbackend_flags "$cmd")" -- "$cur"))
		return 0
	fi

	# Positional words after the command.
	local npos=0
	for ((i = i + 1; i < COMP_CWORD; i++)); do
		case "${COMP_WORDS[i]}" in
		-f|--filename|--config|-o|--output|-n|--namespace|--socket|--bpffs|--cgroup|--state-dir|--watch-dir|--unix-dir|\
		--allow-endpoint|--cluster-domain|--clusterset-domain|--service-endpoints|--metrics-addr|--dns-server|--dns-min-ttl|--dns-max-ttl|--bridge-netns|\
		--bridge-buffer|--bridge-mode|--bridge-idle-timeout|--fd|--pid|--max-frontends|--max-slots|--max-endpoints|\
		--max-tracked-sockets|--kubeconfig|--controller-name) ((i++)) ;;
		-*) ;;
		*) ((npos++)) ;;
		esac
	done
	case "$cmd" in
	get)
		[[ $npos -eq 0 ]] && COMPREPLY=($(compgen -W "backends gateways routes policies frontends endpoints" -- "$cur")) ;;
	describe)
		[[ $npos -eq 0 ]] && COMPREPLY=($(compgen -W "backend" -- "$cur")) ;;
	delete)
		[[ $npos -eq 0 ]] && COMPREPLY=($(compgen -W "backend gateway httproute grpcroute tlsroute tcproute udproute backendtrafficpolicy referencegrant" -- "$cur")) ;;
	help)
		[[ $npos -eq 0 ]] && COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
	esac
	return 0
}
complete -F _kbackend kbackend
