# BPF objects of a process, for checking that nothing outlives it.
#   bpf_ids PID prog_id|map_id   ids of the programs or maps PID holds (fdinfo)
#   bpf_gone "IDS" prog|map      none of IDS is known to bpftool any more; the
#                                kernel frees them asynchronously: waits 5 s
# By id, not name: other ispmon instances may run at the same time.
bpf_ids() { grep -h "^$2:" /proc/"$1"/fdinfo/* 2>/dev/null | awk '{ print $2 }' | sort -u | tr '\n' ' '; }
bpf_gone() {
	local i left
	for _ in $(seq 1 50); do
		left=
		for i in $1; do bpftool "$2" show id "$i" >/dev/null 2>&1 && left="$left $i"; done
		[ -z "$left" ] && return 0
		sleep 0.1
	done
	echo "# still there: $2$left"
	return 1
}
