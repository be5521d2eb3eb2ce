# bash completion for tilld, generated from its argument parser
_tilld() {
    local cur prev path="" w words i
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    # The subcommands typed so far make the path; options and their values are skipped.
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        case " backend check config controlunit demo printer proxy run scanner sim terminal " in
            *" $w "*) path="${path:+$path }$w" ;;
        esac
    done
    case "$path" in
        '')
            words='run config demo sim -h --help --version --config' ;;
        run)
            words='-h --help' ;;
        config)
            words='check -h --help' ;;
        'config check')
            words='-h --help --config' ;;
        demo)
            if [ "$prev" = --terminal ]; then COMPREPLY=($(compgen -W 'zvt nexo' -- "$cur")); return; fi
            words='-h --help --state-dir --terminal' ;;
        sim)
            words='backend proxy printer scanner controlunit terminal -h --help' ;;
        'sim backend')
            if [ "$prev" = --seed ]; then COMPREPLY=($(compgen -W demo -- "$cur")); return; fi
            if [ "$prev" = --swish-auto ]; then COMPREPLY=($(compgen -W 'PAID DECLINED ERROR CANCELLED' -- "$cur")); return; fi
            if [ "$prev" = --log-level ]; then COMPREPLY=($(compgen -W 'debug info warning' -- "$cur")); return; fi
            words='-h --help --listen --db --token-file --seed --catalog --swish-auto --swish-delay --event-capacity --reservation-hold --answer-delay --log-level' ;;
        'sim proxy')
            if [ "$prev" = --mode ]; then COMPREPLY=($(compgen -W 'pass refuse blackhole halfdead reset slow latency http500 http401' -- "$cur")); return; fi
            if [ "$prev" = --log-level ]; then COMPREPLY=($(compgen -W 'debug info warning' -- "$cur")); return; fi
            words='-h --help --listen --target --control --mode --delay-s --up-s --down-s --jitter-s --after-bytes --log-level' ;;
        'sim printer')
            words='-h --help --listen --out --control' ;;
        'sim scanner')
            if [ "$prev" = --suffix ]; then COMPREPLY=($(compgen -W 'CR LF CRLF' -- "$cur")); return; fi
            words='-h --help --link --control --suffix --stdin' ;;
        'sim controlunit')
            words='-h --help --link --control --protocol --unit-id --firmware --log-level' ;;
        'sim terminal')
            if [ "$prev" = --protocol ]; then COMPREPLY=($(compgen -W 'zvt nexo' -- "$cur")); return; fi
            words='-h --help --listen --pty --control --password --terminal-id --log-level --protocol --poi-id' ;;
        *) words="" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _tilld tilld
