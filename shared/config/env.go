package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// envKey is one overridable key: its YAML path and where it lives in the struct.
type envKey struct {
	path  string // e.g. "http.trusted_proxies"
	index []int  // reflect field index path from the root struct
	typ   reflect.Type
}

var durationType = reflect.TypeOf(time.Duration(0))

// EnvName turns a YAML path ("heartbeat.ttl") into its variable name ("PEERGATE_HEARTBEAT_TTL").
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// envKeys lists every key of struct type t; fileOnly collects keys that cannot come from the environment (lists of mappings).
func envKeys(t reflect.Type) (keys map[string]envKey, fileOnly map[string]string) {
	keys = map[string]envKey{}
	fileOnly = map[string]string{}
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), index...), i)
			if opts == "inline" {
				walk(f.Type, prefix, idx)
				continue
			}
			if name == "" || name == "-" {
				continue
			}
			path := prefix + name
			switch {
			case f.Type.Kind() == reflect.Struct && f.Type != durationType:
				walk(f.Type, path+".", idx)
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
				fileOnly[EnvName(path)] = path
			default:
				env := EnvName(path)
				if prev, dup := keys[env]; dup {
					// Two YAML paths folding into one variable would be a silent trap: refuse at once.
					panic(fmt.Sprintf("config: %s and %s both map to %s", prev.path, path, env))
				}
				keys[env] = envKey{path: path, index: idx, typ: f.Type}
			}
		}
	}
	walk(t, "", nil)
	return keys, fileOnly
}

// EnvNames lists the variables that can override keys of cfg (a *Gateway or *Origin), sorted, mapped to their YAML paths.
func EnvNames(cfg any) map[string]string {
	keys, _ := envKeys(reflect.TypeOf(cfg).Elem())
	out := make(map[string]string, len(keys))
	for env, k := range keys {
		out[env] = k.path
	}
	return out
}

// applyEnv sets keys of dst (a pointer to struct) from PEERGATE_* entries of env; an unknown variable is an error.
func applyEnv(dst any, env []string) error {
	root := reflect.ValueOf(dst).Elem()
	keys, fileOnly := envKeys(root.Type())
	var unknown []string
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		k, known := keys[name]
		if !known {
			if path, ok := fileOnly[name]; ok {
				return fmt.Errorf("env %s: %s can only be set in the config file", name, path)
			}
			unknown = append(unknown, name)
			continue
		}
		if err := setValue(root.FieldByIndex(k.index), val); err != nil {
			return fmt.Errorf("env %s (%s): %w", name, k.path, err)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("env %s: unknown variable (no such key; see README configuration reference)", strings.Join(unknown, ", "))
	}
	return nil
}

func setValue(v reflect.Value, s string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("not a duration (e.g. 1s, 500ms): %q", s)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("not a boolean: %q", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("not an integer: %q", s)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("not an unsigned integer: %q", s)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), v.Type().Bits())
		if err != nil {
			return fmt.Errorf("not a number: %q", s)
		}
		v.SetFloat(f)
	case reflect.Slice:
		// Lists are comma-separated; blanks around items are dropped and an empty value empties the list.
		out := reflect.MakeSlice(v.Type(), 0, 0)
		for item := range strings.SplitSeq(s, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			e := reflect.New(v.Type().Elem()).Elem()
			if err := setValue(e, item); err != nil {
				return err
			}
			out = reflect.Append(out, e)
		}
		v.Set(out)
	default:
		return fmt.Errorf("type %s cannot be set from the environment", v.Type())
	}
	return nil
}
