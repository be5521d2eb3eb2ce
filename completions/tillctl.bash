# bash completion for tillctl, generated from its argument parser
_tillctl() {
    local cur prev path="" w words i
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    # The subcommands typed so far make the path; options and their values are skipped.
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        case " acknowledge-rollback call completion controlunit demo devices drawer export float flush journal logs pending print printer receipt report scans settle show status sync terminal verify watch " in
            *" $w "*) path="${path:+$path }$w" ;;
        esac
    done
    case "$path" in
        '')
            words='status pending sync scans journal report receipt terminal controlunit devices printer drawer float logs watch demo call completion -h --help --socket --json -y --yes --version' ;;
        status)
            words='-h --help --socket --json -y --yes' ;;
        pending)
            words='-h --help --socket --json -y --yes --limit --type --all' ;;
        sync)
            words='-h --help --socket --json -y --yes --wait --timeout' ;;
        scans)
            if [ "$prev" = --state ]; then COMPREPLY=($(compgen -W 'pending registered rejected' -- "$cur")); return; fi
            words='-h --help --socket --json -y --yes --pending --state --code --limit' ;;
        journal)
            words='verify acknowledge-rollback export -h --help --socket --json -y --yes' ;;
        'journal verify')
            words='-h --help --socket --json -y --yes' ;;
        'journal acknowledge-rollback')
            words='-h --help --socket --json -y --yes --technician' ;;
        'journal export')
            if [ "$prev" = --format ]; then COMPREPLY=($(compgen -W 'jsonl csv' -- "$cur")); return; fi
            words='-h --help --socket --json -y --yes --format --since-seq --type --receipt' ;;
        report)
            words='-h --help --socket --json -y --yes x z' ;;
        receipt)
            words='show print -h --help --socket --json -y --yes' ;;
        'receipt show')
            words='-h --help --socket --json -y --yes' ;;
        'receipt print')
            words='-h --help --socket --json -y --yes --copy' ;;
        terminal)
            words='status flush -h --help --socket --json -y --yes' ;;
        'terminal status')
            words='-h --help --socket --json -y --yes' ;;
        'terminal flush')
            words='-h --help --socket --json -y --yes' ;;
        controlunit)
            words='status settle -h --help --socket --json -y --yes' ;;
        'controlunit status')
            words='-h --help --socket --json -y --yes' ;;
        'controlunit settle')
            words='-h --help --socket --json -y --yes --register-again --code --unit-id --technician' ;;
        devices)
            words='-h --help --socket --json -y --yes' ;;
        printer)
            words='-h --help --socket --json -y --yes test' ;;
        drawer)
            words='-h --help --socket --json -y --yes' ;;
        float)
            words='-h --help --socket --json -y --yes --note' ;;
        logs)
            words='-h --help --socket --json -y --yes -f --follow -n --lines' ;;
        watch)
            words='-h --help --socket --json -y --yes mode scan sale sync device terminal job' ;;
        demo)
            words='-h --help --socket --json -y --yes server internet printer scanner card controlunit' ;;
        call)
            words='-h --help --socket --json -y --yes --get' ;;
        completion)
            words='-h --help --socket --json -y --yes bash zsh' ;;
        *) words="" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _tillctl tillctl
